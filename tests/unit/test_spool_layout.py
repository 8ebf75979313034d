"""Every file layout a spool claim can hold, against a configuration: which directories are strays.

Routes review, finding 1: segments at the spool root (the single-route layout), in the directory of a route
removed or renamed, or in a directory nobody knows, are acknowledged events. They must be found, whatever
the configuration; dead letters, archives and the file system's own folders are not segments.
"""

from __future__ import annotations

import pytest

from spooler.layout import segment_dirs, stray_dirs
from spoolship.strays import stray_route_name

SEGMENT = "old-pod_w0-00000001.ndjson"
ACTIVE = "old-pod_w0-00000002.active"

# (files on the claim, relative to the root; the configured spools; the strays expected)
LAYOUTS = {
    "routes only, nothing stray": ([f"events/{SEGMENT}", f"clicks/{SEGMENT}"], ["events", "clicks"], []),
    "root segments after switching to --config": ([SEGMENT, f"events/{SEGMENT}"], ["events", "clicks"], ["."]),
    "an active root segment (orphaned writer)": ([ACTIVE], ["events"], ["."]),
    "a renamed route's directory": ([f"clicks/{SEGMENT}"], ["events", "click-events"], ["clicks"]),
    "a removed route's directory": ([f"clicks/{SEGMENT}", f"events/{SEGMENT}"], ["events"], ["clicks"]),
    "an unknown directory": ([f"whatever/{SEGMENT}"], ["events"], ["whatever"]),
    "a nested unknown directory": ([f"a/b/{SEGMENT}"], ["events"], ["a/b"]),
    "back to one route: the old route directories": ([f"events/{SEGMENT}", f"bad/{SEGMENT}", SEGMENT], ["."],
                                                     ["bad", "events"]),
    "one route at the root, nothing stray": ([SEGMENT, "dead-letter/x.json"], ["."], []),
    "dead letters are not segments": (["dead-letter/" + SEGMENT, "events/dead-letter/" + SEGMENT], ["events"],
                                      []),
    "an archive under the spool is skipped": (["archive/" + SEGMENT, "archive/events/" + SEGMENT], ["events"],
                                              []),
    "lost+found and hidden folders are skipped": (["lost+found/" + SEGMENT, ".tmp/" + SEGMENT], ["events"], []),
    "files that are not segments": (["events/notes.txt", "x.ndjson.gz", ".creating-w-00000001.active",
                                     ".checkpoint"], ["events"], []),
    "an empty removed route directory": (["clicks/.checkpoint"], ["events"], []),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_every_layout_a_claim_can_hold(tmp_path, layout):
    files, spools, expected = LAYOUTS[layout]
    root = tmp_path / "spool"
    root.mkdir()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b'{"a":1}\n')
    found = stray_dirs(root, [root / s for s in spools], skip=[root / "archive"])
    assert sorted(str(d.path.relative_to(root)) for d in found) == sorted(expected)
    assert all(d.segments >= 1 and d.bytes == 8 * d.segments for d in found)


def test_segment_dirs_of_a_missing_or_unreadable_tree_is_empty(tmp_path):
    assert segment_dirs(tmp_path / "nope") == []


def test_stray_loop_names_cannot_be_route_names(tmp_path):
    assert stray_route_name(tmp_path, tmp_path) == "stray.root"
    assert stray_route_name(tmp_path, tmp_path / "a" / "b") == "stray.a.b"
