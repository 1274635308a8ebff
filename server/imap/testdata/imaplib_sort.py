"""Check SORT, THREAD and LSUB of mailctl's IMAP server with Python's imaplib.

Usage: imaplib_sort.py HOST PORT CAFILE USER PASSWORD
The mailbox holds the three messages TestImaplibSortLSUB delivers.
Exits non-zero (AssertionError) on the first unexpected answer.
"""
import imaplib
import socket
import ssl
import sys

host, port, cafile, user, password = sys.argv[1:6]

ctx = ssl.create_default_context(cafile=cafile)
M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
M.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def ok(res, what):
    typ, data = res
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


ok(M.login(user, password), "LOGIN")
caps = ok(M.capability(), "CAPABILITY")[0].decode().split()
for c in ("SORT", "ESORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"):
    assert c in caps, (c, caps)

# LSUB: CREATE subscribes the mailbox and its parents; a parent that is
# not subscribed shows as \Noselect under "%"; a deleted mailbox stays
# subscribed until UNSUBSCRIBE, which answers OK.
ok(M.create("Lists/python/dev"), "CREATE")
lsub = ok(M.lsub('""', '"Lists*"'), "LSUB")
assert lsub == [b'() "/" "Lists"', b'() "/" "Lists/python"', b'() "/" "Lists/python/dev"'], lsub
ok(M.unsubscribe("Lists"), "UNSUBSCRIBE")
lsub = ok(M.lsub('""', "%"), "LSUB %")
assert b'(\\Noselect) "/" "Lists"' in lsub, lsub
ok(M.delete("Lists/python/dev"), "DELETE")
lsub = ok(M.lsub('""', '"Lists/*"'), "LSUB after DELETE")
assert b'() "/" "Lists/python"' in lsub and any(b'"Lists/python/dev"' in l for l in lsub), lsub
ok(M.unsubscribe("Lists/python/dev"), "UNSUBSCRIBE of a deleted mailbox")
lsub = ok(M.lsub('""', '"Lists/*"'), "LSUB after UNSUBSCRIBE")
assert lsub == [b'() "/" "Lists/python"'], lsub

ok(M.select("INBOX"), "SELECT")
# 1: "Re: [fwd: Meeting]" from carol, sent Jan 3;
# 2: "Budget" from alice, sent Jan 1; 3: "meeting (fwd)" from bob, sent Jan 2.
assert ok(M.sort("(SUBJECT)", "UTF-8", "ALL"), "SORT")[0] == b"2 1 3"
assert ok(M.sort("(DATE)", "UTF-8", "ALL"), "SORT DATE")[0] == b"2 3 1"
assert ok(M.sort("(REVERSE FROM)", "UTF-8", "ALL"), "SORT REVERSE FROM")[0] == b"1 3 2"
assert ok(M.sort("(SUBJECT DATE)", "UTF-8", "NOT", "FROM", "alice"), "SORT with criteria")[0] == b"3 1"
typ, data = M.uid("SORT", "(ARRIVAL)", "UTF-8", "ALL")
assert typ == "OK" and data[0] == b"1 2 3", (typ, data)
threads = ok(M.thread("ORDEREDSUBJECT", "UTF-8", "ALL"), "THREAD")
assert threads[0] == b"(2)(3 1)", threads
M.logout()
print("ok")
