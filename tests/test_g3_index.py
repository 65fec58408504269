"""The scanner and its index database, on SQLite and on the machine's real MariaDB."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

import pytest

from sisock_plugins.g3 import scanner as scanner_mod
from sisock_plugins.g3.index import (
    DatabaseConfigError,
    DatabaseUnavailable,
    Index,
    datetime_to_unix,
    db_url_from_env,
    parse_db_url,
    unix_to_datetime,
)
from sisock_plugins.g3.reader import HKReader
from sisock_plugins.g3.scanner import Scanner

from .g3gen import (Aggregator, Provider, agent_status, bluefors, lakeshore, mariadb_database, truncate,
                    write_archive)
from .siteproc import free_port

T0 = 1_600_000_000.0  # 2020-09-13 12:26:40 UTC
LS = "observatory.LSA22YE.feeds.temperatures"
BF = "observatory.bluefors.feeds.bluefors"
HWP = "observatory.hwp.feeds.status"


@pytest.fixture(scope="module")
def mariadb_url():
    url, drop = mariadb_database()
    yield url
    drop()


@pytest.fixture(params=["sqlite", "mariadb"])
def index(request, tmp_path):
    if request.param == "sqlite":
        idx = Index(f"sqlite:///{tmp_path}/index.sqlite")
    else:
        idx = Index(request.getfixturevalue("mariadb_url"))
        idx.drop_all()
    yield idx
    idx.close()


def raw(index: Index, query: str, args: tuple = ()) -> list[tuple]:
    """Run an original-sisock query (``%s`` placeholders) on a fresh connection."""
    if index.kind == "sqlite":
        conn = sqlite3.connect(index.url.path)
        try:
            return [tuple(r) for r in conn.execute(query.replace("%s", "?"), args).fetchall()]
        finally:
            conn.close()
    import MySQLdb

    u = index.url
    conn = MySQLdb.connect(host=u.host, port=u.port, user=u.user, passwd=u.password or "", database=u.database)
    try:
        cur = conn.cursor()
        cur.execute(query, args)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def archive(tmp_path):
    """Two hours, three providers, a Lakeshore restart in the second file, 30-min files."""
    agg = Aggregator(tmp_path / "data", time_per_file=1800, start_time=T0)
    ls = agg.add(lakeshore(4))
    agg.add(bluefors())
    agg.add(agent_status())
    agg.run(T0, T0 + 2700)
    agg.restart(ls, T0 + 2700)
    agg.run(T0 + 2700, T0 + 7200)
    agg.close()
    return agg


@pytest.fixture
def count_reads(monkeypatch):
    """Counts the files the scanner opens (it reads through scan.scan_file)."""
    calls: list[str] = []
    real = scanner_mod.scan_file

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(scanner_mod, "scan_file", counting)
    return calls


def test_first_scan_indexes_everything_and_a_rescan_opens_no_file(index, tmp_path, count_reads):
    agg = archive(tmp_path)
    sc = Scanner(index, agg.data_dir)
    stats = sc.scan_tree()
    assert (stats.seen, stats.read, stats.errors, stats.partial) == (4, 4, 0, 0)
    assert len(count_reads) == 4
    counts = index.counts()
    assert counts["sisock_files"] == 4
    assert counts["sisock_fieldsum"] == 4 + 3 + 3
    # feeds: per file and provider; the restart adds a second Lakeshore feed to file 2
    assert counts["feeds"] == 3 + 4 + 3 + 3
    sums = {s.name: s for s in index.field_summaries()}
    ch1 = sums[f"{LS}.Channel_01_T"]
    assert (ch1.t0, ch1.t1, ch1.type, ch1.timeline) == (T0, T0 + 7199, "number", f"{LS}.temps")
    assert sums[f"{HWP}.mode"].type == "string" and sums[f"{HWP}.locked"].type == "bool"
    assert sums[f"{BF}.pressure_ch1_state"].timeline == f"{BF}.pressure_ch1"

    again = sc.scan_tree()
    assert (again.seen, again.unchanged, again.read) == (4, 4, 0)
    assert len(count_reads) == 4  # nothing opened
    gen = index.generation()
    sc.scan_tree()
    assert index.generation() == gen  # nothing changed


def test_fields_hold_utc_times_and_the_original_reader_queries_work(index, tmp_path):
    agg = archive(tmp_path)
    Scanner(index, agg.data_dir).scan_tree()
    first = str(agg.files[0])
    rows = raw(index, "SELECT F.start, F.end FROM fields F, feeds E WHERE F.feed_id = E.id "
                      "AND E.filename = %s AND E.path = %s AND F.field = %s",
               (os.path.basename(first), os.path.dirname(first), "Channel_01_T"))
    start, end = rows[0]
    assert str(start).startswith("2020-09-13 12:26:40")  # UTC, not local time
    assert datetime_to_unix(start) == T0 and datetime_to_unix(end) == T0 + 1799

    # the original g3 reader's file list for 12:50-13:10 UTC: the first two files
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    lo = unix_to_datetime(T0 + 1400).strftime(fmt)
    hi = unix_to_datetime(T0 + 2600).strftime(fmt)
    files = raw(index, "SELECT path, filename FROM feeds WHERE id IN (SELECT DISTINCT feed_id FROM fields "
                       "WHERE end > %s AND start < %s)", (lo, hi))
    assert sorted({os.path.join(p, f) for p, f in files}) == [str(agg.files[0]), str(agg.files[1])]

    # its get_fields: distinct (feed_id, field) in range, then each feed's description
    pairs = raw(index, "SELECT DISTINCT feed_id, field FROM fields WHERE end > %s AND start < %s", (lo, hi))
    names = set()
    for feed_id, field in pairs:
        (desc,), = raw(index, "SELECT description FROM feeds WHERE id=%s", (feed_id,))
        names.add(desc + "." + field)
    assert f"{LS}.Channel_01_T" in names and f"{HWP}.mode" in names and len(names) == 10

    # the description table lists exactly those names, as spelled in the files (the
    # original scanner's view)
    assert {r[0] for r in raw(index, "SELECT description FROM description")} == names
    assert len(raw(index, "SELECT DISTINCT F.field, E.description FROM fields F, feeds E "
                          "WHERE F.feed_id=E.id")) == 10
    # nothing after the archive
    late = unix_to_datetime(T0 + 9000).strftime(fmt)
    assert raw(index, "SELECT DISTINCT feed_id FROM fields WHERE end > %s AND start < %s",
               (late, unix_to_datetime(T0 + 9999).strftime(fmt))) == []
    if index.kind == "mysql":
        # the original reader formatted times with dashes (%H-%M-%S); MariaDB still parses them
        dash = "%Y-%m-%d %H-%M-%S.%f"
        files2 = raw(index, "SELECT path, filename FROM feeds WHERE id IN (SELECT DISTINCT feed_id "
                            "FROM fields WHERE end > %s AND start < %s)",
                     (unix_to_datetime(T0 + 1400).strftime(dash), unix_to_datetime(T0 + 2600).strftime(dash)))
        assert sorted(set(files2)) == sorted(set(files))


def test_a_growing_file_is_resumed_where_the_last_scan_stopped(index, tmp_path, count_reads):
    (path,) = write_archive(tmp_path / "data", T0, 0.5, providers=[lakeshore(2), bluefors()])
    data = path.read_bytes()
    sc = Scanner(index, tmp_path / "data")
    path.write_bytes(data[: len(data) // 2])  # the aggregator is half way, mid-frame
    first = sc.scan_tree()
    assert first.partial == 1
    row = index.file(str(path))
    assert row.status == "partial" and 0 < row.offset < len(data) // 2
    half = index.field_summaries()
    path.write_bytes(data)  # the rest arrives (same inode)
    second = sc.scan_tree()
    assert (second.read, second.resumed, second.partial) == (1, 1, 0)
    assert second.bytes == len(data) - row.offset
    row2 = index.file(str(path))
    assert row2.status == "ok" and row2.offset == len(data)
    assert {s.name: s.t1 for s in index.field_summaries()}[f"{LS}.Channel_01_T"] == T0 + 1799
    assert max(s.t1 for s in half) < T0 + 1799
    resumed_counts = index.counts()
    # the same as reading the complete file at once
    index.drop_all()
    Scanner(index, tmp_path / "data").scan_tree()
    assert index.counts() == resumed_counts


def test_a_truncated_file_is_indexed_to_its_last_frame_and_read_again_when_it_changes(index, tmp_path):
    files = write_archive(tmp_path / "data", T0, 1.0, time_per_file=1800)
    truncate(files[1], 50)
    sc = Scanner(index, tmp_path / "data")
    stats = sc.scan_tree()
    assert (stats.read, stats.partial) == (2, 1)
    assert {s.name: s.t1 for s in index.field_summaries()}[f"{LS}.Channel_01_T"] == T0 + 3540 - 1
    assert sc.scan_tree().read == 0  # unchanged: not retried
    # the writer completes the file (G3Writer rewrites both files in place: the first one
    # is read again from the start, the cut one resumed from its last frame)
    write_archive(tmp_path / "data", T0, 1.0, time_per_file=1800)
    stats = sc.scan_tree()
    assert (stats.read, stats.resumed, stats.partial) == (2, 1, 0)
    assert {s.name: s.t1 for s in index.field_summaries()}[f"{LS}.Channel_01_T"] == T0 + 3599


def test_files_that_disappear_are_removed_from_the_index(index, tmp_path):
    data = tmp_path / "data"
    ls_files = write_archive(data / "a", T0, 1.0, time_per_file=1800)
    (bf_file,) = write_archive(data / "b", T0, 0.5, providers=[bluefors()], session_id=7)
    sc = Scanner(index, data)
    sc.scan_tree()
    assert len(index.field_summaries()) == 4 + 3
    ls_files[1].unlink()
    stats = sc.scan_tree()
    assert stats.removed == 1
    ch1 = {s.name: s for s in index.field_summaries()}[f"{LS}.Channel_01_T"]
    assert (ch1.t0, ch1.t1) == (T0, T0 + 1799)
    bf_file.unlink()
    sc.scan_tree()
    assert {s.description for s in index.field_summaries()} == {LS}
    assert all(r[0].startswith(LS) for r in raw(index, "SELECT description FROM description"))
    assert raw(index, "SELECT COUNT(*) FROM feeds WHERE description = %s", (BF,)) == [(0,)]
    # a vanished data directory (an unmounted disk) does not empty the index
    os.rename(data, tmp_path / "elsewhere")
    with pytest.raises(scanner_mod.ScanError, match="does not exist"):
        sc.scan_tree()
    assert len(index.field_summaries()) == 4


def test_corrupt_and_non_hk_files_are_recorded_and_not_retried_until_they_change(index, tmp_path, count_reads):
    data = tmp_path / "data"
    write_archive(data, T0, 0.5)
    junk = data / "junk.g3"
    junk.write_bytes(b"\x00not a frame" * 50)
    (data / "notes.txt").write_text("ignored: not a .g3 file")
    sc = Scanner(index, data)
    stats = sc.scan_tree()
    assert (stats.seen, stats.read, stats.errors) == (2, 2, 1)
    row = index.file(str(junk))
    assert row.status == "error" and "not a readable .g3 file" in row.error
    assert len(index.field_summaries()) == 4  # the good file is served
    n = len(count_reads)
    assert sc.scan_tree().read == 0 and len(count_reads) == n
    with open(junk, "ab") as f:
        f.write(b"more junk")
    assert sc.scan_tree().read == 1
    assert index.file(str(junk)).status == "error"


def test_every_schema_version_and_naming_era_in_one_tree(index, tmp_path):
    data = tmp_path / "data"
    v0 = write_archive(data, T0 - 86400 * 400, 1, version=0, naming="flat", session_id=1)
    v1 = write_archive(data, T0 - 86400 * 100, 1, version=1, naming="datetime",
                       providers=[lakeshore(4), agent_status()], session_id=2)
    v2 = write_archive(data, T0, 1, version=2, naming="ctime", session_id=3)
    stats = Scanner(index, data).scan_tree()
    assert (stats.read, stats.errors) == (3, 0)
    sums = {s.name: s for s in index.field_summaries()}
    ch1 = sums[f"{LS}.Channel_01_T"]
    assert (ch1.t0, ch1.t1) == (T0 - 86400 * 400, T0 + 3599)
    assert ch1.timeline == f"{LS}.temps"  # the latest file's block name wins
    assert sums[f"{HWP}.mode"].t1 == T0 - 86400 * 100 + 3590  # one sample every 30 s
    only_v0 = index.field_summaries(T0 - 86400 * 400, T0 - 86400 * 399)
    assert {s.name for s in only_v0} == {f"{LS}.Channel_0{i}_T" for i in range(1, 5)}
    assert {index.file(str(p)).status for p in v0 + v1 + v2} == {"ok"}


def test_scan_paths_looks_only_at_the_given_files(index, tmp_path, count_reads):
    data = tmp_path / "data"
    files = write_archive(data, T0, 2, time_per_file=1800)
    sc = Scanner(index, data)
    stats = sc.scan_paths([str(files[0]), str(tmp_path / "outside.g3"), str(data / "x.txt")])
    assert (stats.seen, stats.read) == (1, 1) and index.counts()["sisock_files"] == 1
    files[0].unlink()
    stats = sc.scan_paths([str(files[0]), str(files[1])])
    assert (stats.removed, stats.read) == (1, 1)
    assert set(index.files()) == {str(files[1])}


def test_the_database_being_down_is_a_clear_error(tmp_path):
    url = f"mysql://root@127.0.0.1:{free_port()}/sisock_nowhere"
    idx = Index(url)
    with pytest.raises(DatabaseUnavailable, match=r"index database mysql://root@127.0.0.1:\d+/sisock_nowhere "
                                                  r"is unavailable: Can't connect"):
        idx.check()
    write_archive(tmp_path / "data", T0, 0.1)
    with pytest.raises(DatabaseUnavailable):
        Scanner(idx, tmp_path / "data").scan_tree()
    # SQLite: a file where the database's directory should be
    (tmp_path / "blocker").write_text("")
    bad = Index(f"sqlite:///{tmp_path}/blocker/index.sqlite")
    with pytest.raises(DatabaseUnavailable, match="blocker"):
        bad.check()


def test_a_database_of_the_original_scanner_is_refused_clearly(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE feeds (id INTEGER PRIMARY KEY, filename VARCHAR(255), path VARCHAR(255), "
                 "prov_id INT, description VARCHAR(255), scanned BOOL NOT NULL DEFAULT 0)")
    conn.commit()
    conn.close()
    with pytest.raises(DatabaseConfigError, match="original sisock g3 scanner"):
        Index(f"sqlite:///{path}").check()


def test_database_urls():
    assert parse_db_url("sqlite:////var/lib/x.sqlite").path == "/var/lib/x.sqlite"
    assert parse_db_url("sqlite:rel/x.sqlite").path == "rel/x.sqlite"
    assert parse_db_url("/abs/x.sqlite").kind == "sqlite"
    u = parse_db_url("mysql://sis%40ock:p%3Ass@db.example:3307/hk?unix_socket=/run/m.sock")
    assert (u.kind, u.user, u.password, u.host, u.port, u.database, u.unix_socket) == (
        "mysql", "sis@ock", "p:ss", "db.example", 3307, "hk", "/run/m.sock")
    assert "p:ss" not in u.redacted() and "p:ss" not in repr(u)
    assert parse_db_url("mariadb://root@localhost/x").kind == "mysql"
    for bad, msg in [("postgres://x/y", "unknown scheme"), ("mysql://root@host", "no database name"),
                     ("mysql://root:secret@host/db?x=1", "unknown parameter"), ("", "empty")]:
        with pytest.raises(DatabaseConfigError, match=msg) as err:
            parse_db_url(bad)
        assert "secret" not in str(err.value)
    assert db_url_from_env({}) is None
    url = db_url_from_env({"SQL_HOST": "mariadb", "SQL_USER": "so", "SQL_PASSWD": "p w", "SQL_DB": "files"})
    assert url == "mysql://so:p%20w@mariadb/files"
    assert parse_db_url(url).password == "p w"


def test_time_conversions_are_utc_and_microsecond_exact():
    assert unix_to_datetime(T0) == dt.datetime(2020, 9, 13, 12, 26, 40)
    assert datetime_to_unix("2020-09-13 12:26:40.250000") == T0 + 0.25
    assert datetime_to_unix(dt.datetime(2020, 9, 13, 12, 26, 40, tzinfo=dt.timezone.utc)) == T0


def test_an_index_rebuilt_elsewhere_is_picked_up_again(index, tmp_path):
    """`sisock scan --rebuild` in another process drops the tables under a running scanner."""
    files = write_archive(tmp_path / "data", T0, 1)
    sc = Scanner(index, tmp_path / "data")
    sc.scan_tree()
    other = Index(index.url)
    other.drop_all()
    other.close()
    with pytest.raises(DatabaseUnavailable):
        sc.scan_tree()  # the tables vanished under it
    stats = sc.scan_tree()  # recreated; everything read again
    assert stats.read == 1 and len(index.field_summaries()) == 4
    assert index.file(str(files[0])).status == "ok"


@pytest.mark.parametrize("version", [0, 2])
def test_description_table_holds_the_names_as_spelled_in_the_files(index, tmp_path, version):
    """The original scanner stored ``<feed description>.<field>`` unchanged (its g3 reader
    serves those names; lower-cased ones return no data there); we still accept the
    lower-cased spelling ourselves."""
    old = Provider("observatory.LS240old.feeds.temps", {"Channel 01": {"Channel 01 T": "float",
                                                                       "Channel 01 V": "float"}})
    write_archive(tmp_path / "data", T0, 0.5, version=version, providers=[lakeshore(2), old])
    Scanner(index, tmp_path / "data").scan_tree()
    assert sorted(r[0] for r in raw(index, "SELECT description FROM description")) == sorted([
        f"{LS}.Channel_01_T",
        f"{LS}.Channel_02_T",
        "observatory.LS240old.feeds.temps.Channel 01 T",
        "observatory.LS240old.feeds.temps.Channel 01 V",
    ])
    reader = HKReader(index)
    for name in (f"{LS}.channel_01_t", "observatory.LS240old.feeds.temps.channel_01_t"):
        (tl,) = reader.read_range([name], T0, T0 + 600).values()
        assert len(tl.data[name]) == 600


def test_an_index_holding_lower_cased_descriptions_is_repaired_when_opened(tmp_path):
    url = f"sqlite:///{tmp_path}/index.sqlite"
    write_archive(tmp_path / "data", T0, 0.5, providers=[lakeshore(1)])
    index = Index(url)
    Scanner(index, tmp_path / "data").scan_tree()
    index.close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute("UPDATE description SET description = lower(description)")  # an earlier sisock's rows
    conn.commit()
    conn.close()
    index = Index(url)
    index.check()  # connects: the scanner opening the index
    assert raw(index, "SELECT description FROM description") == [(f"{LS}.Channel_01_T",)]
    index.close()
