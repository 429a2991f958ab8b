"""Apply's progress: plain event lines for CI logs, one rewritten line per object on a terminal."""

import io

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
