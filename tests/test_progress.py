"""Apply's progress: plain event lines for CI logs (with heartbeats while anything waits), one
rewritten line per object on a terminal."""

import io
import time

from reconciler.render import Progress


def test_ci_logs_get_one_plain_line_per_event():
    out = io.StringIO()
    progress = Progress(out, live=False)
    progress("serving_endpoint.a", "update_config(...)")
    progress("serving_endpoint.a", "serving (READY, NOT_UPDATING)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[1].endswith("serving_endpoint.a: serving (READY, NOT_UPDATING)") and lines[1].startswith("[")


def test_a_terminal_gets_one_line_per_object_rewritten_in_place():
    out = io.StringIO()
    progress = Progress(out, live=True)
    progress("serving_endpoint.a", "waiting: config_update IN_PROGRESS")
    progress("serving_endpoint.b", "waiting: config_update IN_PROGRESS")
    progress("serving_endpoint.a", "serving (READY, NOT_UPDATING)")
    progress.close()
    screen = out.getvalue()
    last_frame = screen.rsplit("\x1b[2F", 1)[1]  # the block moves back over its two lines to redraw
    rows = [row.replace("\x1b[2K", "") for row in last_frame.splitlines()]
    assert rows[0].startswith("serving_endpoint.a: serving (READY, NOT_UPDATING) (")
    assert rows[1].startswith("serving_endpoint.b: waiting: config_update IN_PROGRESS (")


def test_a_heartbeat_names_what_is_still_waiting_and_for_how_long():
    out = io.StringIO()
    progress = Progress(out, live=False, heartbeat_seconds=3600)  # the line itself, not its timing
    assert progress.heartbeat() is None  # nothing waits: nothing to say
    with progress.waiting("serving_endpoint.a", "config_update IN_PROGRESS"):
        with progress.waiting("serving_endpoint.b", "config_update IN_PROGRESS"):
            line = progress.heartbeat()
    assert line is not None and line.startswith("still waiting: serving_endpoint.a (config_update IN_PROGRESS, ")
    assert "s), serving_endpoint.b (config_update IN_PROGRESS, " in line
    assert progress.heartbeat() is None  # both done
    progress.close()


def test_many_waits_are_counted_not_listed():
    progress = Progress(io.StringIO(), live=False, heartbeat_seconds=3600)
    for i in range(8):
        progress.waits[f"serving_endpoint.e{i}"] = (0.0, "config_update IN_PROGRESS")
    line = progress.heartbeat()
    assert line is not None and line.count("serving_endpoint.") == Progress.SHOWN and line.endswith(" and 3 more")
    progress.close()


def test_ci_logs_get_heartbeat_lines_while_something_waits():
    out = io.StringIO()
    progress = Progress(out, live=False, heartbeat_seconds=0.05)
    with progress.waiting("serving_endpoint.a", "config_update IN_PROGRESS"):
        for _ in range(600):  # a generous ceiling: the order is the point, not the timing
            if "still waiting: serving_endpoint.a" in out.getvalue():
                break
            time.sleep(0.05)
    progress.close()
    assert "still waiting: serving_endpoint.a (config_update IN_PROGRESS, " in out.getvalue()
