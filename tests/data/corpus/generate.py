#!/usr/bin/python3
"""Generate the DKIM interop test corpus.

Every message is built here byte for byte, so that CRLF, bare LF, bare CR,
trailing whitespace and 8-bit bytes end up in the .eml files exactly as
intended (the repository's .gitattributes marks tests/data/** as -text so
git never rewrites them).  The output is deterministic: running the script
twice produces identical files.

Usage:
    generate.py            (re)write every NN-*.eml next to this script
    generate.py --check    exit 1 if any file is missing, stale or unknown
    generate.py --out DIR  write into DIR instead

Every message carries exactly one From header field, because the signer
refuses to sign anything else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

CRLF = b"\r\n"
LF = b"\n"

Message = bytes
Builder = Callable[[], Message]

# name -> builder; filled by the @message decorator in file order.
MESSAGES: dict[str, Builder] = {}


def message(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under a corpus file name (without .eml)."""

    def register(builder: Builder) -> Builder:
        if name in MESSAGES:
            raise ValueError(f"duplicate corpus name {name}")
        MESSAGES[name] = builder
        return builder

    return register


def b(text: str) -> bytes:
    """UTF-8 encode a str literal."""
    return text.encode("utf-8")


def lines(*parts: str | bytes, eol: bytes = CRLF) -> bytes:
    """Join parts, each terminated by eol."""
    out = bytearray()
    for part in parts:
        out += part if isinstance(part, bytes) else b(part)
        out += eol
    return bytes(out)


def text_body(text: str, eol: bytes = CRLF) -> bytes:
    """Dedent a triple-quoted body and use eol as line terminator."""
    raw = textwrap.dedent(text).lstrip("\n")
    return b(raw).replace(LF, eol)


def build(headers: Iterable[str | bytes], body: bytes, eol: bytes = CRLF) -> Message:
    """Header lines (each terminated by eol), the empty line, then body."""
    return lines(*headers, eol=eol) + eol + body


STD_HEADERS = (
    "From: Alice Example <alice@example.org>",
    "To: Bob Example <bob@example.net>",
    "Subject: Corpus message",
    "Date: Tue, 04 Mar 2025 10:15:00 +0000",
    "Message-ID: <corpus.{n}@example.org>",
)


def std_headers(n: str, *extra: str | bytes, subject: str | None = None) -> list[str | bytes]:
    """The usual five header fields plus extras appended at the end."""
    out: list[str | bytes] = [h.format(n=n) for h in STD_HEADERS]
    if subject is not None:
        out[2] = f"Subject: {subject}"
    out.extend(extra)
    return out


PLAIN_BODY = """\
    Hello Bob,

    this is a plain test message.

    -- 
    Alice
    """


def pseudo_random_bytes(seed: str, size: int) -> bytes:
    """Deterministic bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def base64_lines(data: bytes, width: int = 76, eol: bytes = CRLF) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i:i + width] + eol for i in range(0, len(encoded), width))


# --------------------------------------------------------------------------
# Basics and line endings
# --------------------------------------------------------------------------

@message("01-minimal-crlf")
def _() -> Message:
    return build(std_headers("01"), text_body(PLAIN_BODY))


@message("02-minimal-bare-lf")
def _() -> Message:
    return build(std_headers("02"), text_body(PLAIN_BODY, LF), LF)


@message("03-mixed-crlf-lf-body")
def _() -> Message:
    body = (b"first line ends in CRLF\r\n"
            b"second line ends in bare LF\n"
            b"third line CRLF again\r\n"
            b"\n"
            b"an empty LF line above, CRLF below\r\n"
            b"\r\n"
            b"last line LF\n")
    return build(std_headers("03"), body)


@message("04-mixed-lf-first-line")
def _() -> Message:
    # The first line ends in bare LF, everything else in CRLF: the signer
    # must use LF for the header it adds.
    head = (b"From: Alice Example <alice@example.org>\n"
            b"To: Bob Example <bob@example.net>\r\n"
            b"Subject: first line LF, rest CRLF\r\n"
            b"Date: Tue, 04 Mar 2025 10:15:00 +0000\r\n"
            b"Message-ID: <corpus.04@example.org>\r\n"
            b"\r\n")
    return head + text_body(PLAIN_BODY)


@message("05-mixed-headers-lf-crlf")
def _() -> Message:
    head = (b"Received: from a.example.net by b.example.org; Tue, 4 Mar 2025 10:15:02 +0000\r\n"
            b"From: Alice Example <alice@example.org>\n"
            b"To: Bob Example <bob@example.net>\r\n"
            b"Subject: headers with mixed\n"
            b" line endings and a fold\r\n"
            b"Date: Tue, 04 Mar 2025 10:15:00 +0000\n"
            b"\n")
    return head + b"body line CRLF\r\nbody line LF\n"


@message("06-bare-lf-folded-headers")
def _() -> Message:
    headers = std_headers(
        "06",
        "X-Folded: first part",
        "\tsecond part after a tab",
        "   third part after spaces",
        subject="bare LF message whose",
    )
    headers.insert(3, "  Subject continues on a folded line")
    return build(headers, text_body(PLAIN_BODY, LF), LF)


@message("07-bare-cr-in-body")
def _() -> Message:
    body = (b"a bare CR\rinside a line\r\n"
            b"a line ending in CR CR LF\r\r\n"
            b"\r at the start of a line\r\n"
            b"two\r\rbare CRs\r\n")
    return build(std_headers("07"), body)


# --------------------------------------------------------------------------
# Folded headers
# --------------------------------------------------------------------------

@message("10-folded-subject-spaces")
def _() -> Message:
    headers = std_headers("10", subject="This subject is folded")
    headers[3:3] = ["  over three lines using", "       runs of spaces"]
    return build(headers, text_body(PLAIN_BODY))


@message("11-folded-tabs")
def _() -> Message:
    headers = [
        "From: Alice Example <alice@example.org>",
        "To: Bob Example <bob@example.net>,",
        "\tCarol Example <carol@example.net>,",
        "\t\tDave Example <dave@example.net>",
        "Subject:\tTab after the colon",
        "\tand a tab-folded continuation",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.11@example.org>",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("12-folded-multiline-references")
def _() -> Message:
    refs = [f"<thread.{i}.{'x' * (i % 7)}@lists.example.net>" for i in range(1, 25)]
    headers = std_headers("12", subject="Re: Re: Re: long thread")
    headers.append("In-Reply-To: " + refs[-1])
    headers.append("References: " + refs[0])
    headers.extend(" " + ref for ref in refs[1:])
    return build(headers, text_body(PLAIN_BODY))


@message("13-folded-from")
def _() -> Message:
    headers = [
        "From:",
        " \"Alice Example, with a rather long display name\"",
        " \t<alice@example.org>",
        "To: bob@example.net",
        "Subject: From header is folded and starts on a continuation line",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.13@example.org>",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("14-folded-whitespace-only-continuation")
def _() -> Message:
    headers = std_headers("14", "X-Odd-Fold: value", " ", "\t", " end")
    return build(headers, text_body(PLAIN_BODY))


# --------------------------------------------------------------------------
# Duplicate header fields
# --------------------------------------------------------------------------

@message("20-duplicate-subject")
def _() -> Message:
    headers = std_headers("20", subject="first Subject")
    headers.append("Subject: second Subject")
    return build(headers, text_body(PLAIN_BODY))


@message("21-duplicate-to")
def _() -> Message:
    headers = std_headers("21", "To: Carol Example <carol@example.net>")
    return build(headers, text_body(PLAIN_BODY))


@message("22-several-received")
def _() -> Message:
    received = [
        f"Received: from hop{i}.example.net (hop{i}.example.net [192.0.2.{i}])"
        for i in range(1, 6)
    ]
    headers: list[str | bytes] = []
    for i, line in enumerate(received, start=1):
        headers.append(line)
        headers.append(f"\tby hop{i + 1}.example.net with ESMTPS id ABC{i:03d};")
        headers.append(f"\tTue, 4 Mar 2025 10:15:{i:02d} +0000")
    headers.extend(std_headers("22"))
    return build(headers, text_body(PLAIN_BODY))


@message("23-several-cc")
def _() -> Message:
    headers = std_headers(
        "23",
        "Cc: carol@example.net",
        "Cc: Dave <dave@example.net>, Eve <eve@example.net>",
        "Cc: frank@example.net",
        "Cc:",
        " grace@example.net",
    )
    return build(headers, text_body(PLAIN_BODY))


@message("24-duplicate-date-message-id")
def _() -> Message:
    headers = std_headers(
        "24",
        "Date: Wed, 05 Mar 2025 11:00:00 +0100",
        "Message-ID: <corpus.24.second@example.org>",
    )
    return build(headers, text_body(PLAIN_BODY))


# --------------------------------------------------------------------------
# Odd whitespace
# --------------------------------------------------------------------------

@message("30-header-trailing-whitespace")
def _() -> Message:
    headers = [
        "From: Alice Example <alice@example.org>  ",
        "To: Bob Example <bob@example.net>\t",
        "Subject: trailing  spaces \t ",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000 \t",
        "Message-ID: <corpus.30@example.org>",
        "X-Inner:   many    inner \t\t spaces   ",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("31-body-trailing-whitespace")
def _() -> Message:
    body = (b"line with trailing spaces   \r\n"
            b"line with trailing tab\t\r\n"
            b"line with mixed \t \t\r\n"
            b"inner    runs\tof \t whitespace\r\n"
            b"last line  \r\n")
    return build(std_headers("31"), body)


@message("32-whitespace-only-body-lines")
def _() -> Message:
    body = (b"text\r\n"
            b"   \r\n"
            b"\t\r\n"
            b" \t \r\n"
            b"more text\r\n"
            b"  \r\n"
            b"\t\t\r\n")
    return build(std_headers("32"), body)


@message("33-wsp-before-colon")
def _() -> Message:
    # obs-optional syntax (RFC 5322 section 4.5): WSP between name and colon.
    headers = [
        "From: Alice Example <alice@example.org>",
        "To: Bob Example <bob@example.net>",
        "Subject  : whitespace before the colon",
        "X-Tabbed\t: tab before the colon",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.33@example.org>",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("34-body-leading-whitespace")
def _() -> Message:
    body = (b"  two leading spaces\r\n"
            b"\tleading tab\r\n"
            b" \t mixed leading\r\n"
            b"a\t\tb  c \t d\r\n")
    return build(std_headers("34"), body)


@message("35-body-ends-wsp-then-blank-line")
def _() -> Message:
    return build(std_headers("35"), b"text\r\n \r\n\r\n")


@message("36-body-only-whitespace-lines")
def _() -> Message:
    return build(std_headers("36"), b" \r\n\t\r\n  \t  \r\n")


@message("37-tab-and-no-space-after-colon")
def _() -> Message:
    headers = [
        "From:Alice Example <alice@example.org>",
        "To:\t\tbob@example.net",
        "Subject:no space after the colon",
        "Date:  Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID:<corpus.37@example.org>",
    ]
    return build(headers, text_body(PLAIN_BODY))


# --------------------------------------------------------------------------
# Body shapes
# --------------------------------------------------------------------------

@message("40-empty-body")
def _() -> Message:
    return build(std_headers("40"), b"")


@message("41-empty-body-bare-lf")
def _() -> Message:
    return build(std_headers("41"), b"", LF)


@message("42-headers-only-no-separator")
def _() -> Message:
    # No empty line at all: the header section runs to the end of the file.
    return lines(*std_headers("42"))


@message("43-body-single-crlf")
def _() -> Message:
    return build(std_headers("43"), CRLF)


@message("44-body-only-crlfs")
def _() -> Message:
    return build(std_headers("44"), CRLF * 3)


@message("45-body-no-final-eol")
def _() -> Message:
    return build(std_headers("45"), b"first line\r\nlast line without line ending")


@message("46-body-no-final-eol-bare-lf")
def _() -> Message:
    return build(std_headers("46"), b"first line\nlast line without line ending", LF)


@message("47-many-trailing-blank-lines")
def _() -> Message:
    return build(std_headers("47"), b"text followed by 40 empty lines\r\n" + CRLF * 40)


@message("48-bare-lf-trailing-blank-and-wsp-lines")
def _() -> Message:
    body = b"text\n\n  \n\t\n\n\n"
    return build(std_headers("48"), body, LF)


@message("49-body-blank-lines-inside")
def _() -> Message:
    body = b"\r\n\r\nleading empty lines above\r\n\r\n\r\nand inside\r\nend\r\n"
    return build(std_headers("49"), body)


# --------------------------------------------------------------------------
# Character sets and encodings
# --------------------------------------------------------------------------

@message("50-utf8-raw-headers-body")
def _() -> Message:
    headers = [
        "From: Zoë Ünïcødé <zoe@example.org>",
        "To: Jürgen Müller <juergen@example.net>",
        "Subject: Grüße aus Köln – 日本語 – emoji 📧",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.50@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    body = text_body("""\
        Grüße, Jürgen!
        Ça va ? Ελληνικά, русский, 中文, العربية.
        Emoji: 📧✉️ and combining: e\u0301
        """)
    return build(headers, body)


@message("51-latin1-raw-headers-body")
def _() -> Message:
    headers = [
        b"From: Ren\xe9 Fran\xe7ois <rene@example.org>",
        b"To: bob@example.net",
        b"Subject: Caf\xe9 cr\xe8me \xe0 la fran\xe7aise",
        b"Date: Tue, 04 Mar 2025 10:15:00 +0000",
        b"Message-ID: <corpus.51@example.org>",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=iso-8859-1",
        b"Content-Transfer-Encoding: 8bit",
    ]
    body = (b"Ol\xe9! Stra\xdfe, \xa9 2025, \xbd price, \xff end.\r\n"
            b"\xe0\xe1\xe2\xe3\xe4\xe5\xe6\xe7\xe8\xe9 \xa0nbsp\xa0\r\n")
    return build(headers, body)


@message("52-rfc2047-encoded-words")
def _() -> Message:
    headers = [
        "From: =?UTF-8?Q?Zo=C3=AB_=C3=9Cnic=C3=B8de?= <zoe@example.org>",
        "To: =?ISO-8859-1?B?SvxyZ2VuIE38bGxlcg==?= <juergen@example.net>",
        "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=",
        " =?UTF-8?Q?_und_mehr_=E2=80=93_folded?=",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.52@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("53-binary-8bit-body")
def _() -> Message:
    # Every byte value except NUL, CR and LF, in lines of 64 bytes.
    allowed = bytes(v for v in range(1, 256) if v not in (0x0A, 0x0D))
    rng = random.Random(53)
    body = bytearray()
    for _ in range(32):
        body += bytes(rng.choice(allowed) for _ in range(64)) + CRLF
    body += allowed + CRLF
    headers = std_headers(
        "53",
        "MIME-Version: 1.0",
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: 8bit",
    )
    return build(headers, bytes(body))


@message("54-quoted-printable")
def _() -> Message:
    headers = std_headers(
        "54",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    )
    body = text_body("""\
        Gr=C3=BC=C3=9Fe! This line is long enough that it needs a soft line brea=
        k in the middle of a word, and continues here.
        Trailing space encoded=20
        Trailing tab encoded=09
        A literal equals sign: 1 + 1 =3D 2
        Soft break at the very end=
        """)
    return build(headers, body)


# --------------------------------------------------------------------------
# MIME structure
# --------------------------------------------------------------------------

def alternative_part(boundary: str) -> bytes:
    return text_body(f"""\
        --{boundary}
        Content-Type: text/plain; charset=utf-8
        Content-Transfer-Encoding: 7bit

        Plain text version.

        --{boundary}
        Content-Type: text/html; charset=utf-8
        Content-Transfer-Encoding: 7bit

        <html><body><p>HTML <b>version</b>.</p></body></html>

        --{boundary}--
        """)


@message("60-multipart-alternative")
def _() -> Message:
    boundary = "alt-boundary-60"
    headers = std_headers(
        "60",
        "MIME-Version: 1.0",
        f"Content-Type: multipart/alternative; boundary=\"{boundary}\"",
    )
    return build(headers, b"This is a multi-part message in MIME format.\r\n\r\n"
                 + alternative_part(boundary))


@message("61-multipart-mixed-base64-attachment")
def _() -> Message:
    boundary = "mixed-boundary-61"
    attachment = pseudo_random_bytes("attachment-61", 3000)
    headers = std_headers(
        "61",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed;",
        f" boundary=\"{boundary}\"",
    )
    body = (text_body(f"""\
        --{boundary}
        Content-Type: text/plain; charset=us-ascii

        See the attached file.

        --{boundary}
        Content-Type: application/octet-stream; name="data.bin"
        Content-Disposition: attachment; filename="data.bin"
        Content-Transfer-Encoding: base64

        """)
        + base64_lines(attachment)
        + CRLF + b(f"--{boundary}--") + CRLF)
    return build(headers, body)


@message("62-nested-multipart")
def _() -> Message:
    outer = "outer-62"
    inner = "inner-62"
    image = pseudo_random_bytes("image-62", 1200)
    headers = std_headers(
        "62",
        "MIME-Version: 1.0",
        f"Content-Type: multipart/mixed; boundary={outer}",
    )
    body = (text_body(f"""\
        preamble text that MIME readers ignore
        --{outer}
        Content-Type: multipart/alternative; boundary="{inner}"

        """)
        + alternative_part(inner)
        + text_body(f"""\
        --{outer}
        Content-Type: image/png; name="pixel.png"
        Content-Transfer-Encoding: base64

        """)
        + base64_lines(image)
        + text_body(f"""\
        --{outer}--
        epilogue text
        """))
    return build(headers, body)


# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------

@message("70-long-body-line-2000")
def _() -> Message:
    long_line = (b"0123456789" * 200)
    return build(std_headers("70"), b"short line\r\n" + long_line + CRLF + b"end\r\n")


@message("71-long-header-998")
def _() -> Message:
    prefix = "X-Long-Header: "
    words = []
    while len(prefix) + len(" ".join(words)) < 998:
        words.append(f"word{len(words):03d}")
    value = " ".join(words)[: 998 - len(prefix)]
    header = prefix + value
    assert len(header) == 998, len(header)
    return build(std_headers("71", header), text_body(PLAIN_BODY))


@message("72-large-body-200k")
def _() -> Message:
    rng = random.Random(72)
    vocabulary = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                  "adipiscing", "elit", "sed", "do", "eiusmod", "tempor", "\t",
                  "  ", "x"]
    body = bytearray()
    while len(body) < 200 * 1024:
        words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 14))]
        body += b(" ".join(words)) + CRLF
    return build(std_headers("72"), bytes(body))


@message("73-many-headers")
def _() -> Message:
    extra = [f"X-Header-{i:03d}: value number {i}" for i in range(120)]
    return build(std_headers("73", *extra), text_body(PLAIN_BODY))


@message("74-long-unbroken-token")
def _() -> Message:
    token = base64.b64encode(pseudo_random_bytes("token-74", 540)).decode()
    headers = std_headers("74", f"X-Token: {token}",
                          f"List-Unsubscribe: <https://example.org/u/{token[:300]}>")
    return build(headers, text_body(PLAIN_BODY))


# --------------------------------------------------------------------------
# Mail-system headers
# --------------------------------------------------------------------------

@message("80-existing-dkim-and-arc")
def _() -> Message:
    foreign_b = base64.b64encode(pseudo_random_bytes("foreign-80", 256)).decode()
    foreign_bh = base64.b64encode(pseudo_random_bytes("foreign-bh-80", 32)).decode()
    headers = [
        "ARC-Seal: i=1; a=rsa-sha256; t=1741083300; cv=none; d=relay.example.net;",
        f"\ts=arc1; b={foreign_b[:60]}",
        f"\t {foreign_b[60:]}",
        "ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed;",
        "\td=relay.example.net; s=arc1; h=from:to:subject:date:message-id;",
        f"\tbh={foreign_bh}; b={foreign_b[:40]}",
        "ARC-Authentication-Results: i=1; relay.example.net;",
        "\tdkim=pass header.d=example.org; spf=pass smtp.mailfrom=example.org",
        "Authentication-Results: relay.example.net; dkim=pass header.d=example.org",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.org;",
        "\ts=foreign; t=1741083299; h=from:to:subject:date:message-id;",
        f"\tbh={foreign_bh};",
        f"\tb={foreign_b}",
    ]
    headers.extend(std_headers("80"))
    return build(headers, text_body(PLAIN_BODY))


@message("81-received-chain")
def _() -> Message:
    headers = [
        "Return-Path: <bounce+alice=example.org@mail.example.org>",
        "Delivered-To: bob@example.net",
        "Received: by 2002:a05:6a10:1234:b0:4a1:aaaa:bbbb with SMTP id x12csp123;",
        "        Tue, 4 Mar 2025 02:15:03 -0800 (PST)",
        "X-Received: by 2002:a17:90b:1:b0:2fe:1 with SMTP id 1mr2;",
        "        Tue, 04 Mar 2025 02:15:03 -0800 (PST)",
        "Received: from mail.example.org (mail.example.org. [198.51.100.7])",
        "        by mx.example.net with ESMTPS id abc.123",
        "        for <bob@example.net>",
        "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);",
        "        Tue, 04 Mar 2025 02:15:02 -0800 (PST)",
        "Received: from [127.0.0.1] (localhost [127.0.0.1])",
        "\tby mail.example.org (Postfix) with ESMTPSA id 4Z6q",
        "\tfor <bob@example.net>; Tue,  4 Mar 2025 10:15:01 +0000 (UTC)",
        "Received-SPF: pass (mx.example.net: domain of example.org designates"
        " 198.51.100.7 as permitted sender) client-ip=198.51.100.7;",
    ]
    headers.extend(std_headers("81"))
    return build(headers, text_body(PLAIN_BODY))


@message("82-list-headers")
def _() -> Message:
    headers = std_headers(
        "82",
        "Sender: dev-bounces@lists.example.net",
        "Reply-To: dev@lists.example.net",
        "List-Id: Developers <dev.lists.example.net>",
        "List-Unsubscribe: <mailto:dev-leave@lists.example.net>,",
        " <https://lists.example.net/unsubscribe/dev>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "List-Archive: <https://lists.example.net/archive/dev>",
        "List-Post: <mailto:dev@lists.example.net>",
        "List-Help: <mailto:dev-request@lists.example.net?subject=help>",
        "List-Subscribe: <mailto:dev-join@lists.example.net>",
        "List-Owner: <mailto:dev-owner@lists.example.net>",
        "Precedence: list",
        subject="[dev] list traffic",
    )
    return build(headers, text_body(PLAIN_BODY))


@message("83-resent-headers")
def _() -> Message:
    headers = [
        "Resent-From: Carol <carol@example.net>",
        "Resent-To: dave@example.net",
        "Resent-Date: Thu, 06 Mar 2025 08:00:00 +0000",
        "Resent-Message-ID: <resent.2@example.net>",
        "Resent-From: Bob <bob@example.net>",
        "Resent-Sender: relay@example.net",
        "Resent-To: carol@example.net",
        "Resent-Cc: eve@example.net",
        "Resent-Date: Wed, 05 Mar 2025 08:00:00 +0000",
        "Resent-Message-ID: <resent.1@example.net>",
    ]
    headers.extend(std_headers("83"))
    return build(headers, text_body(PLAIN_BODY))


@message("84-empty-header-values")
def _() -> Message:
    headers = std_headers("84", "X-Empty:", "X-Empty2: ", "X-Empty3:\t",
                          "Cc:", "Keywords:  \t ")
    return build(headers, text_body(PLAIN_BODY))


@message("85-header-name-case")
def _() -> Message:
    headers = [
        "FROM: Alice Example <alice@example.org>",
        "tO: Bob Example <bob@example.net>",
        "subject: lower-case subject field name",
        "DATE: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-id: <corpus.85@example.org>",
        "mime-VERSION: 1.0",
        "CONTENT-TYPE: text/plain; charset=us-ascii",
    ]
    return build(headers, text_body(PLAIN_BODY))


@message("86-common-singletons")
def _() -> Message:
    headers = std_headers(
        "86",
        "Sender: Secretary <secretary@example.org>",
        "Reply-To: Alice Replies <replies@example.org>",
        "In-Reply-To: <corpus.85@example.org>",
        "References: <corpus.84@example.org> <corpus.85@example.org>",
        "Comments: this header is usually not signed",
        "Keywords: dkim, test",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"us-ascii\"; format=flowed",
        "Content-Transfer-Encoding: 7bit",
        "Content-ID: <part.86@example.org>",
        "Content-Description: a plain part",
    )
    return build(headers, text_body(PLAIN_BODY))


@message("87-from-with-comments-and-group")
def _() -> Message:
    headers = [
        "From: \"Example, Alice (Ops)\" <alice@example.org> (work address)",
        "To: undisclosed-recipients:;",
        "Bcc:",
        "Subject: From with comments, group syntax To",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
        "Message-ID: <corpus.87@example.org>",
    ]
    return build(headers, text_body(PLAIN_BODY))


# --------------------------------------------------------------------------
# Body content that transports like to mangle
# --------------------------------------------------------------------------

@message("90-body-from-and-dot-lines")
def _() -> Message:
    body = text_body("""\
        From the start of the line, mbox would escape this.
        >From already escaped.
        .
        .. two dots
        .leading dot
        From: not a header, this is the body
        ...
        """)
    return build(std_headers("90"), body)


@message("91-bare-lf-body-from-dot-lines")
def _() -> Message:
    body = b"From here\n.\n..\nFrom \n.end\n"
    return build(std_headers("91"), body, LF)


@message("92-dkim-signature-like-body")
def _() -> Message:
    body = text_body("""\
        DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=fake;
        	bh=AAAA; b=BBBB
        The lines above are body text, not a header.
        """)
    return build(std_headers("92"), body)


@message("93-lf-whitespace-mix")
def _() -> Message:
    headers = [
        "From: Alice Example <alice@example.org> ",
        "To:\tbob@example.net",
        "Subject:   spaced   out   ",
        "\t  continued  ",
        "Date: Tue, 04 Mar 2025 10:15:00 +0000",
    ]
    body = b"  lead\n\ttab\t\ntrail  \n \n\t\n"
    return build(headers, body, LF)


# --------------------------------------------------------------------------

def render_all() -> dict[str, bytes]:
    return {f"{name}.eml": builder() for name, builder in MESSAGES.items()}


def check_invariants(files: dict[str, bytes]) -> None:
    """Guard the corpus rules; fails loudly instead of writing a bad corpus."""
    import re

    from_re = re.compile(rb"^from[ \t]*:", re.IGNORECASE)
    for name, data in files.items():
        assert b"\x00" not in data, f"{name}: contains NUL"
        header_part = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
        header_lines = re.split(rb"\r?\n", header_part)
        froms = [line for line in header_lines if from_re.match(line)]
        assert len(froms) == 1, f"{name}: {len(froms)} From header fields"
    total = sum(len(d) for d in files.values())
    assert total < 1024 * 1024, f"corpus is {total} bytes"


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=here,
                        help="output directory (default: next to this script)")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the files differ from the generator")
    args = parser.parse_args()

    files = render_all()
    check_invariants(files)
    existing = {p.name for p in args.out.glob("*.eml")}

    if args.check:
        stale = [name for name, data in files.items()
                 if not (args.out / name).is_file() or (args.out / name).read_bytes() != data]
        unknown = sorted(existing - files.keys())
        for name in stale:
            print(f"stale or missing: {name}")
        for name in unknown:
            print(f"not produced by the generator: {name}")
        print(f"{len(files) - len(stale)} passed, {len(stale) + len(unknown)} failed")
        return 1 if stale or unknown else 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name in sorted(existing - files.keys()):
        (args.out / name).unlink()
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    print(f"wrote {len(files)} messages, {sum(len(d) for d in files.values())} bytes, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
