"""Reading one housekeeping .g3 file (sisock_plugins.g3.scan): pure, no database."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sisock_plugins.g3.scan import FrameReader, ScanState, scan_file

from .g3gen import Aggregator, agent_status, bluefors, lakeshore, truncate, value, write_archive

T0 = 1_600_000_000.0


def _blocks_by(result, description):
    return [b for b in result.blocks if b[3] == description]


@pytest.mark.parametrize("version", [0, 1, 2])
def test_every_schema_version_gives_blocks_fields_and_times(tmp_path, version):
    providers = [lakeshore(3), bluefors()] if version else [lakeshore(3)]
    if version == 0:
        providers.append(bluefors())
        providers[-1].blocks = {"pressure_ch1": {"pressure_ch1": "float"}}
    (path,) = write_archive(tmp_path, T0, 0.5, version=version, providers=providers)
    r = scan_file(str(path))
    assert r.status == "ok" and r.error is None
    assert r.offset == os.path.getsize(path) and r.start_offset == 0
    assert r.frames == 2 + 30 * 2  # session, status, 30 frames of each provider
    assert sorted(r.providers) == [(0, "observatory.LSA22YE.feeds.temperatures"),
                                   (1, "observatory.bluefors.feeds.bluefors")]
    ls = _blocks_by(r, "observatory.LSA22YE.feeds.temperatures")
    assert len(ls) == 30
    offset, index, prov_id, _, name, fields, t0, t1, n = ls[0]
    # v2 names blocks; older versions get so3g's translator name
    assert name == ("temps" if version == 2 else "block_for_Channel_01_T")
    assert fields == (("Channel_01_T", "number"), ("Channel_02_T", "number"), ("Channel_03_T", "number"))
    assert (t0, t1, n) == (T0, T0 + 59, 60)
    assert ls[-1][6:] == (T0 + 1740, T0 + 1799, 60)
    # offsets point at data frames that decode to the generated values
    blocks = FrameReader(str(path)).blocks_at(offset)
    t, cols = blocks[index]
    np.testing.assert_array_equal(t, T0 + np.arange(60.0))
    np.testing.assert_allclose(cols["Channel_02_T"], value("Channel_02_T", "float", t))


def test_types_of_int_bool_and_string_fields(tmp_path):
    (path,) = write_archive(tmp_path, T0, 0.2, providers=[bluefors(), agent_status()])
    r = scan_file(str(path))
    layouts = {(b[3], b[4]): b[5] for b in r.blocks}
    assert layouts[("observatory.bluefors.feeds.bluefors", "pressure_ch1")] == (
        ("pressure_ch1", "number"), ("pressure_ch1_state", "number"))
    assert layouts[("observatory.hwp.feeds.status", "state")] == (
        ("locked", "bool"), ("mode", "string"), ("spin_hz", "number"))
    offset = next(b[0] for b in r.blocks if b[3] == "observatory.hwp.feeds.status")
    t, cols = FrameReader(str(path)).blocks_at(offset)[0]
    assert cols["mode"].dtype.kind == "U" and cols["locked"].dtype == bool
    assert list(cols["mode"]) == list(value("mode", "str", t))


def test_provider_restart_mid_file_gets_a_new_prov_id_and_keeps_its_description(tmp_path):
    agg = Aggregator(tmp_path, start_time=T0)
    ls = agg.add(lakeshore(2))
    agg.run(T0, T0 + 600)
    agg.restart(ls, T0 + 600)
    agg.run(T0 + 600, T0 + 1200)
    agg.close()
    r = scan_file(str(agg.files[0]))
    assert r.status == "ok"
    assert sorted(set(r.providers)) == [(0, "observatory.LSA22YE.feeds.temperatures"),
                                        (1, "observatory.LSA22YE.feeds.temperatures")]
    by_prov = {p: [b for b in r.blocks if b[2] == p] for p in (0, 1)}
    assert len(by_prov[0]) == 10 and len(by_prov[1]) == 10
    assert by_prov[0][-1][7] == T0 + 599 and by_prov[1][0][6] == T0 + 600
    assert r.state.providers == {1: "observatory.LSA22YE.feeds.temperatures"}


def test_truncated_file_is_read_up_to_its_last_complete_frame_and_resumes(tmp_path):
    (path,) = write_archive(tmp_path, T0, 0.5)
    full = scan_file(str(path))
    data = path.read_bytes()
    cut = truncate(path, 100)  # the last frame is cut in the middle
    r = scan_file(str(path))
    assert r.status == "partial"
    assert "incomplete" in r.error and str(cut) in r.error
    assert r.offset == full.blocks[-1][0]  # stops where the last frame starts
    assert len(r.blocks) == len(full.blocks) - 1
    # the writer finishes the frame: resume from the recorded offset and state
    path.write_bytes(data)
    more = scan_file(str(path), r.offset, ScanState.from_json(r.state.to_json()))
    assert more.status == "ok" and more.start_offset == r.offset
    assert r.blocks + more.blocks == full.blocks
    assert more.offset == len(data)


def test_file_cut_inside_the_first_frame_is_an_error(tmp_path):
    (path,) = write_archive(tmp_path, T0, 0.1)
    truncate(path, os.path.getsize(path) - 20)
    r = scan_file(str(path))
    assert r.status == "error" and "not a readable .g3 file" in r.error and r.blocks == []


def test_garbage_is_an_error_not_an_exception(tmp_path):
    rng = np.random.default_rng(7)
    contents = [b"hello, this is not a g3 file\n"] + [rng.bytes(3000) for _ in range(40)]
    for i, content in enumerate(contents):
        path = tmp_path / f"junk{i}.g3"
        path.write_bytes(content)
        r = scan_file(str(path))
        assert r.status == "error" and r.error, i
    # garbage after good frames: indexed up to there
    (good,) = write_archive(tmp_path / "a", T0, 0.1)
    full = scan_file(str(good))
    with open(good, "ab") as f:
        f.write(rng.bytes(5000))
    r = scan_file(str(good))
    assert r.status == "partial" and r.blocks == full.blocks


def test_empty_missing_and_non_housekeeping_files(tmp_path):
    empty = tmp_path / "empty.g3"
    empty.touch()
    assert scan_file(str(empty)).status == "empty"
    assert scan_file(str(tmp_path / "gone.g3")).status == "missing"
    scan = tmp_path / "scan.g3"
    from spt3g import core

    w = core.G3Writer(str(scan))
    f = core.G3Frame(core.G3FrameType.Scan)
    f["x"] = 1.0
    w.Process(f)
    w.Process(core.G3Frame(core.G3FrameType.EndProcessing))
    r = scan_file(str(scan))
    assert r.status == "not_hk" and r.frames == 1 and "no housekeeping frames" in r.error


def test_data_frames_of_unannounced_providers_are_counted_not_indexed(tmp_path):
    (path,) = write_archive(tmp_path, T0, 0.1)
    full = scan_file(str(path))
    status_end = full.blocks[0][0]
    # resume after the status frame with a state that lost the providers
    state = ScanState(session_id=1234, providers={}, hk_frames=2, head=full.state.head)
    r = scan_file(str(path), status_end, state)
    assert r.blocks == [] and r.orphan_frames == 6


def test_a_rewritten_file_is_read_from_the_start_even_if_it_grew(tmp_path):
    (path,) = write_archive(tmp_path, T0, 0.2)
    first = scan_file(str(path))
    # same name, other content, longer
    write_archive(tmp_path, T0, 0.3, session_id=99, providers=[lakeshore(8)])
    r = scan_file(str(path), first.offset, first.state)
    assert r.start_offset == 0 and r.status == "ok"
    assert r.blocks[0][6] == T0 and len(r.blocks) == 18 and len(r.blocks[0][5]) == 8


@pytest.mark.parametrize("naming,expected", [
    ("ctime", "16000/1600000000.g3"),
    ("datetime", "16000/2020-09-13-12-26-40.g3"),
    ("flat", "2020-09-13-12-26-40.g3"),
])
def test_file_naming_eras(tmp_path, naming, expected):
    files = write_archive(tmp_path, T0, 2, naming=naming)
    assert os.path.relpath(files[0], tmp_path) == expected
    assert len(files) == 2
    assert all(scan_file(str(f)).status == "ok" for f in files)


def _summaries_by_field(result):
    from sisock_core.summaries import as_buckets

    return {name: (timeline, kind, as_buckets(b)) for name, timeline, kind, b in result.summaries}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("version", [0, 1, 2])
def test_summaries_of_a_file_equal_those_of_its_samples(tmp_path, version, compiled, monkeypatch):
    from sisock_core import summaries as S

    if compiled and S._buckets is None:
        pytest.skip("sisock_core._buckets is not built here (no C compiler at install time)")
    if not compiled:
        monkeypatch.setattr(S, "_buckets", None)

    providers = [lakeshore(3), bluefors()]
    if version == 0:  # v0 holds floats only
        providers[1].blocks = {"pressure_ch1": {"pressure_ch1": "float"}}
    (path,) = write_archive(tmp_path, T0 + 17, 0.5, version=version, providers=providers)
    got = _summaries_by_field(scan_file(str(path)))
    t_ls = T0 + 17 + np.arange(1800.0)
    t_bf = T0 + 20 + 10 * np.arange(180.0)
    expected = {f"Channel_0{i}_T": (t_ls, "float") for i in (1, 2, 3)}
    expected.update({"pressure_ch1": (t_bf, "float")} if version == 0 else
                    {"pressure_ch1": (t_bf, "float"), "pressure_ch1_state": (t_bf, "int")})
    seen = set()
    for name, (timeline, kind, b) in got.items():
        field = name.rsplit(".", 1)[1]
        if field not in expected:
            continue  # bluefors' other fields
        seen.add(field)
        t, ftype = expected[field]
        y = value(field, ftype, t)
        if version == 0:
            y = y.astype(np.float64)
        assert kind == y.dtype.kind
        want = S.summarize(t, y)
        for c in ("k", "n", "count", "t_first", "t_last", "t_min", "t_max", "first", "last", "vmin", "vmax", "vsum"):
            np.testing.assert_array_equal(getattr(b, c), getattr(want, c), err_msg=f"{name} {c}")
    assert seen == set(expected)


def test_a_field_missing_from_some_blocks_of_its_name_is_not_summarized_the_others_are(tmp_path):
    agg = Aggregator(tmp_path, start_time=T0)
    ls = agg.add(lakeshore(2))
    agg.run(T0, T0 + 600)
    ls.blocks = {name: {**fields, "Channel_09_T": "float"} for name, fields in ls.blocks.items()}
    agg.run(T0 + 600, T0 + 1200)
    agg.close()
    got = _summaries_by_field(scan_file(str(agg.files[0])))
    names = {n.rsplit(".", 1)[1] for n in got}
    assert names == {"Channel_01_T", "Channel_02_T"}
    b = got[f"{ls.description}.Channel_01_T"][2]
    assert int(b.n.sum()) == 1200 and b.t_last[-1] == T0 + 1199
