"""Check \\Recent and keyword announcements with Python's imaplib.

Usage: imaplib_recent.py HOST PORT CAFILE USER PASSWORD
The INBOX holds 2 messages that no session has seen. Exits non-zero
(AssertionError) on the first unexpected answer.
"""
import imaplib
import socket
import ssl
import sys
import time

host, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)


def connect():
    M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    M.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ok(M.login(user, password), "LOGIN")
    return M


def ok(res, what):
    typ, data = res
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def untagged(M, name):
    """Pops the untagged responses called name."""
    typ, data = M.response(name)
    return [d for d in data if d is not None]


def search(M, criteria):
    return ok(M.search(None, criteria), "SEARCH " + criteria)[0].split()


# imaplib speaks IMAP4rev1: \Recent applies.
A = connect()
ok(A.select("INBOX"), "SELECT A")
assert untagged(A, "RECENT") == [b"2"], "A: SELECT's RECENT"
A.untagged_responses.clear()
B = connect()
ok(B.select("INBOX"), "SELECT B")
assert untagged(B, "RECENT") == [b"0"], "B: SELECT's RECENT (A has them)"
B.untagged_responses.clear()

C = connect()
data = ok(C.status("INBOX", "(MESSAGES RECENT)"), "STATUS")
assert b"RECENT 2" in data[0], data

# A new message: the first session to hear of it has \Recent.
msg = b"From: a@example.test\r\nSubject: recent\r\n\r\nhello\r\n"
ok(C.append("INBOX", r"(\Seen)", None, msg), "APPEND")
ok(B.noop(), "NOOP B")
assert untagged(B, "EXISTS") == [b"3"], "B: EXISTS"
assert untagged(B, "RECENT") == [b"1"], "B: RECENT"
ok(A.noop(), "NOOP A")
assert untagged(A, "EXISTS") == [b"3"], "A: EXISTS"
assert untagged(A, "RECENT") == [b"2"], "A: RECENT (the new one is B's)"
assert search(A, "RECENT") == [b"1", b"2"], search(A, "RECENT")
assert search(A, "NEW") == [b"1", b"2"], "A: NEW"
assert search(B, "RECENT") == [b"3"], "B: RECENT"
assert search(B, "NEW") == [], "B: NEW (the new one is \\Seen)"
assert search(B, "OLD") == [b"1", b"2"], "B: OLD"
data = ok(A.fetch("1", "(FLAGS)"), "FETCH A")
assert b"\\Recent" in data[0], data
data = ok(B.fetch("1", "(FLAGS)"), "FETCH B")
assert b"\\Recent" not in data[0], data
data = ok(C.status("INBOX", "(RECENT)"), "STATUS")
assert b"RECENT 3" in data[0], data

# A keyword first used by B is announced to A with FLAGS and
# PERMANENTFLAGS, with the FETCH that shows it.
A.untagged_responses.clear()
B.untagged_responses.clear()
ok(B.store("2", "+FLAGS", "(Project7)"), "STORE keyword")
assert any(b"Project7" in f for f in untagged(B, "FLAGS")), "B: FLAGS"
ok(A.noop(), "NOOP A")
flags = untagged(A, "FLAGS")
assert any(b"Project7" in f for f in flags), ("A: FLAGS", flags)
perm = untagged(A, "PERMANENTFLAGS")
assert any(b"Project7" in f and b"\\*" in f for f in perm), ("A: PERMANENTFLAGS", perm)
fetch = untagged(A, "FETCH")
assert any(b"Project7" in f for f in fetch), ("A: FETCH", fetch)

# \Recent ends with the session.
A.logout()
B.logout()
# The server closes the sessions just after their BYE.
for _ in range(100):
    data = ok(C.status("INBOX", "(RECENT)"), "STATUS")
    if b"RECENT 0" in data[0]:
        break
    time.sleep(0.05)
assert b"RECENT 0" in data[0], data
C.logout()
print("imaplib recent/keywords: ok")
