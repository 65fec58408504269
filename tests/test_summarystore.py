"""The summary store as a cache: corrupt contents are wiped and recomputed (only the node's
own, in a shared store), transient errors wipe nothing; rollups commit every few batches
and stop between them. Real SQLite files and a private MariaDB."""

from __future__ import annotations

import sqlite3
import struct

import attrs
import numpy as np
import pytest

from sisock_core import summaries as S
from sisock_core.engine import NodeEngine
from sisock_core.summarystore import SummaryStore, SummaryStoreCorrupt, is_corruption

from .g3gen import mariadb_database
from .test_longrange import T0, ArchivePlugin, OwnSummaries, assert_same, expected

pytest_plugins = ["sisock_core.testing"]

NOW = T0 + 30 * 86400
#: A row whose header is fine and whose payload is not (zlib then fails on it).
BAD_ZLIB = struct.pack("<qI", 0, 5) + b"not compressed at all"
#: A row that claims to be zstd and is not.
BAD_ZSTD = struct.pack("<qI", 0, 5) + b"\x28\xb5\x2f\xfd" + b"garbage" * 4


@pytest.fixture
def shared_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.sqlite"
        return
    url, drop = mariadb_database()
    yield url
    drop()


def rows_of(url, namespace):
    """Every stored row of ``namespace``'s series, read through a connection of its own."""
    other = SummaryStore(url)
    try:
        with other.cursor() as cur:
            cur.execute(other.sql(
                "SELECT s.name, s.t_first, s.t_last, s.covered_until, r.tier, r.source, r.seg, r.t0, r.t1, r.m, "
                "r.data FROM sisock_sum_series s JOIN sisock_sum_rows r ON r.series_id = s.id "
                "WHERE SUBSTR(s.name, 1, ?) = ? ORDER BY s.name, r.tier, r.source, r.seg"),
                (len(namespace) + 1, namespace + "/"))
            return [tuple(bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else v for v in r)
                    for r in cur.fetchall()]
    finally:
        other.close()


def corrupt(url, store, name, tier, blob, *, dirty=False):
    """Overwrite one row of series ``name`` (of ``store``'s namespace) at ``tier`` with
    ``blob``, through another connection; ``dirty``: mark the series for a rollup."""
    sid = store.series([name])[name].id
    other = SummaryStore(url)
    try:
        with other.cursor(write=True) as cur:
            cur.execute(other.sql("SELECT MIN(seg) FROM sisock_sum_rows WHERE series_id = ? AND tier = ?"),
                        (sid, int(S.TIERS[tier])))
            seg = cur.fetchone()[0]
            cur.execute(other.sql("UPDATE sisock_sum_rows SET data = ? WHERE series_id = ? AND tier = ? AND seg = ?"),
                        (blob, sid, int(S.TIERS[tier]), seg))
            assert cur.rowcount == 1
            if dirty:
                cur.execute(other.sql("UPDATE sisock_sum_series SET dirty_t0 = t_first, dirty_t1 = t_last + 1, "
                                      "dirty_gen = dirty_gen + 1 WHERE id = ?"), (sid,))
    finally:
        other.close()


def answers_from_summaries(node, plugin, store):
    """The node's answer over 20 days equals raw decimation and came from the summaries."""
    t0, t1 = T0 + 3600.5, T0 + 20 * 86400
    failures = node.server.engine.summary_failures
    plugin.reads.clear()
    ans = node.get_data(["a", "b"], t0, t1, max_points=400)
    reads = list(plugin.reads)
    exp, tier, grid = expected(plugin.read_range, ["a", "b"], t0, t1, 400, open_end=True)
    assert tier == 3600.0
    assert_same({k: ans[k] for k in ("data", "timeline")}, exp)
    assert node.server.engine.summary_failures == failures
    covered = store.series(["a"])["a"].covered_until
    # raw reads: the partial bucket at the start and what follows the summarized part
    assert reads and all(e - s <= grid or s >= covered - grid for _, s, e in reads)


@pytest.mark.parametrize("shared_url", ["sqlite", "mariadb"], indirect=True)
def test_a_corrupt_row_of_a_shared_store_is_rebuilt_and_only_that_node_s(sisock_node, shared_url, log_lines):
    plugins = {n: ArchivePlugin(T0 + 12 * 86400) for n in ("n1", "n2")}
    nodes = {n: sisock_node(p, name=n, clock=lambda: NOW, summaries_db=shared_url) for n, p in plugins.items()}
    for node in nodes.values():
        assert node.summarize() > 0
    store = nodes["n1"].server.engine.summaries
    assert store.writer.prefix == "n1/"
    answers_from_summaries(nodes["n1"], plugins["n1"], store)
    theirs = rows_of(shared_url, "n2")
    assert theirs

    # found by a read: the answer comes from raw data, the next pass rebuilds the store
    corrupt(shared_url, store, "a", S.TIERS.index(3600.0), BAD_ZSTD)
    t0, t1 = T0 + 3600.5, T0 + 20 * 86400
    server = nodes["n1"].server
    plain = NodeEngine(server.context, server.pm, "n1", clock=lambda: NOW)  # no summaries
    assert nodes["n1"].get_data(["a"], t0, t1, max_points=400) == plain.get_data(["a"], t0, t1, max_points=400)
    assert store.damaged and "does not unpack" in store.damaged
    assert nodes["n1"].summarize() > 0
    assert store.damaged is None
    warned = [line for line in log_lines if "was corrupt" in line]
    assert len(warned) == 1 and store.describe() in warned[0] and "namespace 'n1'" in warned[0]
    answers_from_summaries(nodes["n1"], plugins["n1"], store)
    assert rows_of(shared_url, "n2") == theirs

    # found by the summarizer's rollup: that pass fails and wipes, the next one rebuilds
    mine = rows_of(shared_url, "n1")
    corrupt(shared_url, store, "b", 0, BAD_ZLIB, dirty=True)
    assert nodes["n1"].summarize() == 0
    assert rows_of(shared_url, "n1") == [] and store.series(["a", "b", "n"]) == {}
    assert rows_of(shared_url, "n2") == theirs
    assert nodes["n1"].summarize() > 0
    assert rows_of(shared_url, "n1") == mine
    answers_from_summaries(nodes["n1"], plugins["n1"], store)
    answers_from_summaries(nodes["n2"], plugins["n2"], nodes["n2"].server.engine.summaries)


@pytest.mark.parametrize("shared_url", ["sqlite", "mariadb"], indirect=True)
def test_a_transient_error_wipes_nothing(sisock_node, shared_url):
    plugin = ArchivePlugin(T0 + 12 * 86400)
    node = sisock_node(plugin, name="n1", clock=lambda: NOW, summaries_db=shared_url)
    assert node.summarize() > 0
    store = node.server.engine.summaries
    before = rows_of(shared_url, "n1")
    other = SummaryStore(shared_url)
    with store.cursor() as cur:  # give up waiting for a lock soon
        cur.execute("PRAGMA busy_timeout = 50" if store.kind == "sqlite" else
                    "SET SESSION innodb_lock_wait_timeout = 1")
    with other.cursor(write=True) as cur:  # another writer holds the lock the pass needs
        cur.execute("SELECT id FROM sisock_sum_series" + ("" if store.kind == "sqlite" else " FOR UPDATE"))
        cur.fetchall()
        assert node.summarize() == 0
    other.close()
    assert store.damaged is None
    assert rows_of(shared_url, "n1") == before
    assert node.summarize() > 0
    answers_from_summaries(node, plugin, store)


def test_an_unnamespaced_mariadb_core_store_drops_its_tables_and_is_rebuilt():
    from sisock_core.model import NodeContext
    from sisock_core.plugins import make_plugin_manager
    from sisock_core.summarizer import Summarizer

    url, drop = mariadb_database()
    try:
        plugin = ArchivePlugin(T0 + 12 * 86400)
        store = SummaryStore(url)
        engine = NodeEngine(NodeContext(name="arch", description=""), make_plugin_manager(plugin, name="arch"),
                            "arch", clock=lambda: NOW, summaries=store)
        summarizer = Summarizer(store, lambda s, e: engine._call("list_fields", start=s, end=e), engine._read,
                                clock=engine.clock)
        assert summarizer.run_once() > 0
        with store.cursor(write=True) as cur:
            cur.execute("ALTER TABLE sisock_sum_rows DROP COLUMN m")  # a schema the code does not know
        with pytest.raises(SummaryStoreCorrupt, match="Unknown column"):
            with store.cursor(write=True) as cur:
                store.writer.put_base(cur, 1, "", S.summarize(np.array([T0]), np.array([1.0]), S.BASE_TIER))
        assert "Unknown column" in store.damaged
        assert store.reset() == "dropped its tables"
        with store.cursor(schema=False) as cur:
            cur.execute("SHOW TABLES LIKE 'sisock_sum%'")
            assert cur.fetchall() == ()
        assert summarizer.run_once() > 0
        t0, t1 = T0 + 3600.5, T0 + 20 * 86400
        exp, _, _ = expected(plugin.read_range, ["a"], t0, t1, 400, open_end=True)
        assert_same(engine.get_data(["a"], t0, t1, max_points=400), exp)
        assert engine.summary_failures == 0
        store.close()
    finally:
        drop()


def test_damaged_shared_tables_are_not_wiped_row_by_row_but_named_for_the_operator(tmp_path):
    """A namespaced store whose tables are broken (not a row of it): deleting the node's rows
    cannot mend them and would recompute them forever, so nothing is deleted and the error says
    what to do."""
    from sisock_core.summarystore import SummaryStoreError

    url = f"sqlite:///{tmp_path}/shared.sqlite"
    mine, theirs = SummaryStore(url, namespace="a"), SummaryStore(url, namespace="b")
    for store in (mine, theirs):
        with store.cursor(write=True) as cur:
            sid = store.writer.series_id(cur, "x", "tl", "f")
            store.writer.put_base(cur, sid, "", S.summarize(np.array([T0]), np.array([1.0]), S.BASE_TIER))
    before = rows_of(url, "a") + rows_of(url, "b")
    with mine.cursor(write=True) as cur:
        cur.execute("ALTER TABLE sisock_sum_series DROP COLUMN covered_until")  # a schema the code does not know
    with pytest.raises(SummaryStoreCorrupt, match="no such column"):
        mine.series(["x"])
    with pytest.raises(SummaryStoreError, match="shared by other nodes: repair it or drop its sisock_sum_"):
        mine.reset()
    with sqlite3.connect(f"{tmp_path}/shared.sqlite") as conn:  # every row still there
        assert conn.execute("SELECT COUNT(*) FROM sisock_sum_rows").fetchone()[0] == len(before) == 2
    mine.close()
    theirs.close()


def test_a_plugin_s_own_corrupt_store_is_kept_and_the_fix_logged_once(sisock_node, tmp_path, log_lines):
    url = f"sqlite:///{tmp_path}/own.sqlite"
    filler = SummaryStore(url)
    with filler.cursor(write=True) as cur:
        sid = filler.writer.series_id(cur, "a", "fast", "f")
        t = T0 + np.arange(0, 20 * 86400, 30.0)
        filler.writer.put_base(cur, sid, "file1", S.summarize(t, np.sin(t), S.BASE_TIER))
        cur.execute("UPDATE sisock_sum_groups SET data = ? WHERE source = 'file1'", (BAD_ZLIB,))
        assert cur.rowcount == 1
    filler.close()
    node = sisock_node(OwnSummaries(url), name="own", clock=lambda: NOW)
    for _ in range(2):
        ans = node.get_data(["a"], T0, T0 + 20 * 86400, max_points=100)
        assert ans["data"]["a"]  # from raw data
    assert node.summarize() == 0
    errors = [line for line in log_lines if "sisock scan --rebuild" in line]
    assert len(errors) == 1 and url in errors[0] and "does not unpack" in errors[0]
    assert (tmp_path / "own.sqlite").exists()
    assert node.server.engine.summaries.series(["a"])  # nothing wiped


def test_errors_that_mean_corruption_and_those_that_pass():
    import MySQLdb

    assert is_corruption(sqlite3.DatabaseError("file is not a database"))
    assert is_corruption(sqlite3.DatabaseError("database disk image is malformed"))
    assert is_corruption(sqlite3.OperationalError("no such column: m"))
    assert not is_corruption(sqlite3.OperationalError("database is locked"))
    assert not is_corruption(sqlite3.OperationalError("unable to open database file"))
    for code in (1054, 1932, 1194):
        assert is_corruption(MySQLdb.OperationalError(code, "..."))
    for code in (2002, 2003, 2013, 1205, 1213, 1045):  # refused, gone, lock timeout, deadlock, access
        assert not is_corruption(MySQLdb.OperationalError(code, "..."))


# -- rollups in bounded transactions ---------------------------------------------------


def filled(path, days):
    """A store at ``path`` with two series of base rows over ``days`` days, all dirty."""
    store = SummaryStore(f"sqlite:///{path}")
    rng = np.random.default_rng(3)
    with store.cursor(write=True) as cur:
        for name in ("x", "y"):
            sid = store.writer.series_id(cur, name, "tl", "f")
            t = T0 + np.sort(rng.uniform(0, days * 86400, days * 200))
            b = S.summarize(t, rng.normal(size=t.size), S.BASE_TIER)
            day = np.floor_divide(b.k, 1440)
            for d in np.unique(day):
                store.writer.put_base(cur, sid, "", b.take(day == d), seg=int(d))
    return store


def coarse_rows(path):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("SELECT series_id, tier, source, seg, t0, t1, m, data FROM sisock_sum_rows "
                            "WHERE tier > 60 ORDER BY 1, 2, 3, 4").fetchall()
    finally:
        conn.close()


def dirty(store):
    return {n: i.dirty is not None for n, i in store.series(["x", "y"]).items()}


def test_a_stopped_rollup_leaves_the_series_dirty_and_resumes_to_the_same_rows(tmp_path):
    whole = filled(tmp_path / "whole.sqlite", 400)
    assert whole.rollup(batch=2, batches_per_commit=3) == 2
    assert dirty(whole) == {"x": False, "y": False}
    expected_rows = coarse_rows(tmp_path / "whole.sqlite")
    assert expected_rows

    part = filled(tmp_path / "part.sqlite", 400)
    seen = []  # coarse rows another connection sees at each check

    def stop_mid_way():
        seen.append(len(coarse_rows(tmp_path / "part.sqlite")))
        return len(seen) > 6

    assert part.rollup(batch=2, batches_per_commit=3, should_stop=stop_mid_way) == 0
    assert dirty(part) == {"x": True, "y": True}
    # committed mid-way: another connection saw coarse rows while the rollup went on
    assert seen[-1] < len(expected_rows) and max(seen[:-1]) > 0
    assert part.rollup(batch=2, batches_per_commit=3) == 2
    assert dirty(part) == {"x": False, "y": False}
    assert coarse_rows(tmp_path / "part.sqlite") == expected_rows


def test_rollup_commits_grow_with_the_dirty_range(tmp_path):
    commits = {}
    for days in (3, 300):
        store = filled(tmp_path / f"{days}.sqlite", days)
        before = store.commits
        assert store.rollup(batch=2, batches_per_commit=3) == 2
        commits[days] = store.commits - before
    assert commits[3] <= 3 and commits[300] >= 5 * commits[3]


# -- a plugin's files: one group per file ----------------------------------------------


def base_read(store, names, start, end):
    """Base-tier buckets of ``names`` in ``[start, end)`` read by ``store``."""
    info = store.series(names)
    got = store.read([info[n] for n in names], 0, start, end)
    return {n: got[info[n].id] for n in names}


@pytest.mark.parametrize("shared_url", ["sqlite", "mariadb"], indirect=True)
def test_a_file_s_series_live_in_one_group_rows_of_old_stores_are_read_and_folded_in(shared_url):
    """Written per file: one group blob and a part per series. A store written before
    groups existed holds a row per series and file: it is read as before, and moved into
    the file's group when the file is read again (merged, nothing counted twice)."""
    from .test_summaries import assert_buckets_equal

    rng = np.random.default_rng(11)
    t = T0 + np.sort(rng.uniform(0, 7200, 3000))
    y = {n: rng.normal(size=t.size) for n in ("a", "b", "c")}
    head, tail = t < T0 + 3630, t >= T0 + 3630  # the file grows mid-bucket
    whole = {n: S.summarize(t, y[n]) for n in y}
    start, end = T0 - 60, T0 + 7260
    writer_store, reader = SummaryStore(shared_url), SummaryStore(shared_url)
    w = writer_store.writer
    with writer_store.cursor(write=True) as cur:
        sid = {n: w.series_id(cur, n, "tl", "f") for n in y}
        # "a" as an old store holds it: a row of its own in sisock_sum_rows
        w._write_rows(cur, w._rows(0, [(sid["a"], "file1", 0, S.summarize(t[head], y["a"][head]))]))
        w._update_spans(cur, [(sid["a"], float(t[head][0]), float(t[head][-1]), start, end)])
        w.put_bases(cur, "file1", [(sid[n], S.summarize(t[head], y[n][head])) for n in ("b", "c")])
    first = base_read(reader, ["a", "b", "c"], start, end)
    for n in y:
        assert_buckets_equal(first[n], S.summarize(t[head], y[n][head]))
    with writer_store.cursor(write=True) as cur:  # the file grew: "a" and "b" have new samples, "c" none
        w.put_bases(cur, "file1", [(sid[n], S.summarize(t[tail], y[n][tail])) for n in ("a", "b")], merge=True)
        cur.execute("SELECT COUNT(*) FROM sisock_sum_rows WHERE tier = 60")
        assert cur.fetchone()[0] == 0  # folded into the group
        cur.execute("SELECT COUNT(*) FROM sisock_sum_groups")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT COUNT(*) FROM sisock_sum_parts")
        assert cur.fetchone()[0] == 3
    grown = base_read(reader, ["a", "b", "c"], start, end)
    for n in ("a", "b"):
        merged = grown[n]
        np.testing.assert_allclose(merged.vsum, whole[n].vsum, rtol=1e-12)  # summed in two pieces
        assert_buckets_equal(attrs.evolve(merged, vsum=whole[n].vsum), whole[n])
    assert_buckets_equal(grown["c"], S.summarize(t[head], y["c"][head]))  # kept as it was
    with writer_store.cursor(write=True) as cur:
        w.drop_source(cur, "file1")
        for table in ("sisock_sum_rows", "sisock_sum_groups", "sisock_sum_parts"):
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert cur.fetchone()[0] == 0, table
    assert all(len(b) == 0 for b in base_read(reader, ["a", "b", "c"], start, end).values())
    assert all(i.dirty is not None for i in reader.series(["a", "b", "c"]).values())
    writer_store.close()
    reader.close()


#: Whole 60 s buckets around the hour of samples from T0 that the next tests write.
HOUR = (np.floor(T0 / 60) * 60, np.floor(T0 / 60) * 60 + 3660)


def one_series(tmp_path):
    """A writer and a reader (two connections) of a store holding series "a", one file
    of an hour at 1 Hz; and that series' id and times."""
    url = f"sqlite:///{tmp_path}/s.sqlite"
    t = T0 + np.arange(0, 3600, 1.0)
    store, reader = SummaryStore(url), SummaryStore(url)
    with store.cursor(write=True) as cur:
        sid = store.writer.series_id(cur, "a", "tl", "f")
        store.writer.put_bases(cur, "file1", [(sid, S.summarize(t, np.sin(t)))])
    return store, reader, sid, t


def test_a_reader_holding_a_series_reads_it_again_only_when_its_group_changed(tmp_path):
    """Warm reads take a series' buckets by the group's version, without its blob; a group
    rewritten since is read again."""
    store, reader, sid, t = one_series(tmp_path)
    fetched = []
    real = reader._group_blobs
    reader._group_blobs = lambda cur, keys: fetched.append(sorted(keys)) or real(cur, keys)
    first = base_read(reader, ["a"], *HOUR)["a"]
    assert np.array_equal(base_read(reader, ["a"], *HOUR)["a"].first, first.first) and len(fetched) == 1
    with store.cursor(write=True) as cur:
        store.writer.put_bases(cur, "file1", [(sid, S.summarize(t, np.cos(t)))])
    again = base_read(reader, ["a"], *HOUR)["a"]
    assert len(fetched) == 2 and np.array_equal(again.first, S.summarize(t, np.cos(t)).first)
    store.close()
    reader.close()


def test_a_group_of_many_series_is_compressed_in_chunks_and_each_series_read_back(tmp_path):
    """Rows of ~64 kB are compressed together: a reader (cold, or the rollup of another
    process) finds each series in its chunk; a merge reads them back from the chunks too."""
    from sisock_core.summarystore import CHUNK_BYTES

    from .test_summaries import assert_buckets_equal

    url = f"sqlite:///{tmp_path}/s.sqlite"
    rng = np.random.default_rng(5)
    t = T0 + np.sort(rng.uniform(0, 3600, 3600))
    names = [f"f{i:02d}" for i in range(40)]
    y = {n: rng.normal(size=t.size) for n in names}
    store = SummaryStore(url)
    with store.cursor(write=True) as cur:
        sid = {n: store.writer.series_id(cur, n, "tl", "f") for n in names}
        store.writer.put_bases(cur, "file1", [(sid[n], S.summarize(t, y[n])) for n in names])
        cur.execute("SELECT COUNT(DISTINCT at_byte), MAX(at_raw) FROM sisock_sum_parts")
        chunks, last = cur.fetchone()
    assert chunks >= 3 and last < CHUNK_BYTES
    reader = SummaryStore(url)
    got = base_read(reader, names, *HOUR)
    for n in names:
        assert_buckets_equal(got[n], S.summarize(t, y[n]))
    assert reader.rollup() == len(names)  # from the chunks (no memo in this process)
    info = reader.series(names)
    coarse = reader.read([info[n] for n in names], 1, HOUR[0] // 600 * 600, HOUR[1] // 600 * 600 + 600)
    for n in names:
        assert_buckets_equal(coarse[info[n].id], S.rollup(S.summarize(t, y[n]), 60.0, 600.0))
    with store.cursor(write=True) as cur:  # merged: every series read back from its chunk
        store.writer.put_bases(cur, "file1", [(sid["f00"], S.summarize(t[:0], y["f00"][:0]))], merge=True)
    got = base_read(reader, names, *HOUR)
    for n in names:
        assert_buckets_equal(got[n], S.summarize(t, y[n]))
    store.close()
    reader.close()


def test_a_group_rewritten_between_a_reader_s_two_queries_is_read_again(tmp_path):
    """A reader finds the parts, then fetches the groups' blobs: if a writer replaced a
    group in between (its version differs), the parts are read again, never sliced from
    the other blob."""
    from .test_summaries import assert_buckets_equal

    store, reader, sid, t = one_series(tmp_path)
    real, calls = reader._group_blobs, []

    def rewritten_once(cur, keys):
        if not calls:  # the writer replaces the group (other buckets, another layout) right now
            with store.cursor(write=True) as wcur:
                store.writer.put_bases(wcur, "file1", [(sid, S.summarize(t[:1800], np.cos(t[:1800])))])
        calls.append(sorted(keys))
        return real(cur, keys)

    reader._group_blobs = rewritten_once
    got = base_read(reader, ["a"], *HOUR)["a"]
    assert len(calls) == 2
    assert_buckets_equal(got, S.summarize(t[:1800], np.cos(t[:1800])))
    store.close()
    reader.close()
