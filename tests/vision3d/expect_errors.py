"""The check the vision3d error tests share (imported by name: pytest puts this folder on ``sys.path``)."""

import pytest


def one_line_error(call, *parts: str) -> str:
    """Call ``call``; it must raise a one-line ValueError containing every ``part``."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message
