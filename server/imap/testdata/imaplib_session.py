"""Drive mailctl's IMAP server with Python's imaplib, as a real client.

Usage: imaplib_session.py HOST PORT CAFILE USER PASSWORD
Exits non-zero (AssertionError) on the first unexpected answer.
"""
import imaplib
import re
import socket
import ssl
import sys

host, port, cafile, user, password = sys.argv[1:6]
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))

ctx = ssl.create_default_context(cafile=cafile)
M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
# Nagle + delayed ACK would cost ~40 ms per command.
M.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def ok(res, what):
    typ, data = res
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


caps = M.capabilities
assert "ID" in caps and "IMAP4REV2" in caps, caps
assert "LOGINDISABLED" not in caps, caps

typ, data = M._simple_command("ID", '("name" "imaplib" "version" "3")')
assert typ == "OK", (typ, data)
typ, idresp = M._untagged_response(typ, data, "ID")
assert b'"name" "mailctl"' in idresp[0], idresp

ok(M.login(user, password), "LOGIN")
assert "QUOTA" in M.capabilities or "QUOTA" in ok(M.capability(), "CAPABILITY")[0].decode().split(), M.capabilities
typ, data = M.getquotaroot("INBOX")
assert typ == "OK" and data[0][0].startswith(b"INBOX"), (typ, data)

# LIST with the special-use attributes (RFC 6154), plain and extended.
lines = ok(M.list(), "LIST")
attrs = {}
for line in lines:
    m = re.match(rb'\(([^)]*)\) "/" "?([^"]*)"?$', line)
    assert m, line
    attrs[m.group(2).decode()] = m.group(1).decode().split()
for name, use in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")]:
    assert use in attrs.get(name, []), (name, attrs)
assert "INBOX" in attrs, attrs
typ, data = M._simple_command("LIST", '""', '"*"', "RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))")
assert typ == "OK", data
typ, st = M._untagged_response(typ, data, "STATUS")
assert any(b"MESSAGES" in s for s in st if s), st
M.untagged_responses.pop("LIST", None)
typ, data = M._simple_command("LIST", '(SPECIAL-USE)', '""', '"*"')
typ, special = M._untagged_response(typ, data, "LIST")
assert len([s for s in special if s]) == 5, special

# Thunderbird asks for the hierarchy delimiter this way.
assert ok(M.list('""', '""'), 'LIST "" ""') == [b'(\\Noselect) "/" ""'], M.list('""', '""')
data = ok(M.lsub('""', "*"), "LSUB")
assert len(data) == 6, data

n = int(ok(M.select("INBOX"), "SELECT")[0])
delivered = n

bodies = []
for i in range(3):
    body = (f"From: py@example.test\r\nTo: {user}\r\nSubject: imaplib {i}\r\n"
            f"Date: Mon, 23 Nov 2026 16:0{i}:00 +0000\r\n\r\nbody number {i}\r\n").encode()
    bodies.append(body)
    flags = "(\\Seen)" if i == 0 else None
    typ, data = M.append("INBOX", flags, imaplib.Time2Internaldate(1700000000 + i), body)
    assert typ == "OK", data
    assert b"APPENDUID" in data[0], data

M.noop()
n = int(ok(M.select("INBOX"), "SELECT")[0])
assert n == delivered + 3, (n, delivered)

data = ok(M.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), "FETCH")
subjects = [d[1] for d in data if isinstance(d, tuple)]
assert len(subjects) == n, data
assert b"Subject: imaplib 2" in subjects[-1], subjects

data = ok(M.uid("FETCH", "*", "(BODY.PEEK[] INTERNALDATE)"), "UID FETCH *")
assert data[0][1] == bodies[2], data
data = ok(M.fetch(str(n), "(BODY[TEXT])"), "FETCH BODY[TEXT]")
assert data[0][1] == b"body number 2\r\n", data
assert b"\\Seen" in data[0][0] or any(b"\\Seen" in (d if isinstance(d, bytes) else d[0]) for d in data), data

seen = ok(M.search(None, "SEEN"), "SEARCH SEEN")[0].split()
assert seen == [str(delivered + 1).encode(), str(n).encode()], seen
found = ok(M.search(None, '(SUBJECT "imaplib 1")'), "SEARCH SUBJECT")[0].split()
assert found == [str(delivered + 2).encode()], found
found = ok(M.search(None, 'BODY "number 0"'), "SEARCH BODY")[0].split()
assert found == [str(delivered + 1).encode()], found

data = ok(M.store(str(delivered + 2), "+FLAGS", "(\\Deleted $Work)"), "STORE")
assert b"\\Deleted" in data[0] and b"$Work" in data[0], data
assert ok(M.search(None, "DELETED"), "SEARCH DELETED")[0].split() == [str(delivered + 2).encode()]
assert ok(M.search(None, "KEYWORD $Work"), "SEARCH KEYWORD")[0].split() == [str(delivered + 2).encode()]

# UID MOVE the first appended message to Archive (RFC 6851).
uid = ok(M.fetch(str(delivered + 1), "(UID)"), "FETCH UID")[0]
uid = re.search(rb"UID (\d+)", uid).group(1).decode()
typ, data = M.uid("MOVE", uid, "Archive")
assert typ == "OK", data
assert M.untagged_responses.get("EXPUNGE"), M.untagged_responses

data = ok(M.expunge(), "EXPUNGE")
assert data and data[0] is not None, data

n2 = int(ok(M.select("INBOX"), "SELECT")[0])
assert n2 == n - 2, (n2, n)
arch = int(ok(M.select("Archive"), "SELECT Archive")[0])
assert arch == 1, arch
data = ok(M.fetch("1", "(BODY.PEEK[] FLAGS)"), "FETCH Archive")
assert data[0][1] == bodies[0] and b"\\Seen" in data[0][0], data

typ, data = M.copy("1", "Trash")
assert typ == "OK" and b"COPYUID" in data[0], data
ok(M.select("Trash"), "SELECT Trash")
data = ok(M.fetch("1", "(BODY.PEEK[])"), "FETCH copy")
assert data[0][1] == bodies[0], data
ok(M.store("1", "+FLAGS", "(\\Deleted)"), "STORE in Trash")
ok(M.close(), "CLOSE")
assert int(ok(M.select("Trash", readonly=True), "EXAMINE Trash")[0]) == 0

ok(M.create("Projects/2026"), "CREATE")
ok(M.rename("Projects", "Done"), "RENAME")
names = [l.decode() for l in ok(M.list('""', "Done*"), "LIST Done*")]
assert len(names) == 2, names
assert M.logout()[0] == "BYE"
print("imaplib session OK")
