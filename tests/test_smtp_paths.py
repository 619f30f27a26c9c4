"""The listener reads MAIL FROM and RCPT TO paths on a short road when they are plain
(<dot-atom@domain>): whatever the path, the answer is the one aiosmtpd's own parser gives."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from assistant.channels.smtp import _IntakeSMTP


class _Handler:
    pass


OURS, THEIRS = _IntakeSMTP(_Handler()), SMTP(_Handler())
_ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-.\"ø@ []<>():,;\\", min_size=0, max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.builds(lambda lead, local, domain, tail: f"{lead}<{local}@{domain}>{tail}",
                 st.sampled_from(["", " ", "\t"]), _ATOM, _ATOM,
                 st.sampled_from(["", " ", " SIZE=1234", "\tBODY=8BITMIME", "x", " (c) SIZE=1",
                                  "  SMTPUTF8 ", " ", "\r\n"])))
@example("<ola.nordmann@example.no> SIZE=2048 BODY=8BITMIME")
@example("<>")
@example("<@relay.example:ola@example.no>")
@example('<"ola nordmann"@example.no>')
@example("<ola@[192.0.2.1]>")
@example("<ola@example.no>   ")
@example("ola@example.no")
def test_every_path_is_read_as_aiosmtpd_reads_it(path: str) -> None:
    assert _outcome(OURS, path) == _outcome(THEIRS, path)


def _outcome(server: SMTP, path: str) -> object:
    """The parsed path, or the error (email's parser fails on some garbage, "<0@[>": aiosmtpd
    then answers 500, and so must we)."""
    try:
        return server._getaddr(path)
    except Exception as exc:  # noqa: BLE001
        return type(exc)


def test_a_local_part_over_the_limit_is_refused_on_the_short_road_too() -> None:
    ours, theirs = _IntakeSMTP(_Handler()), SMTP(_Handler())
    ours.local_part_limit = theirs.local_part_limit = 64  # a class attribute in aiosmtpd
    path = "<" + "a" * 65 + "@example.no>"
    assert ours._getaddr(path) == theirs._getaddr(path) == (None, None)
    path = "<" + "a" * 64 + "@example.no>"
    assert ours._getaddr(path) == theirs._getaddr(path) != (None, None)
