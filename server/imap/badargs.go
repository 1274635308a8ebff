package imap

import (
	"bytes"

	goimap "github.com/emersion/go-imap/v2"
)

// Arguments the library cannot decode. The library answers a command
// whose arguments fail to decode in some of its own steps (a mailbox name
// that is not valid modified UTF-7, RFC 3501 section 5.1.3; an unknown
// SEARCH key) as if the server had failed: "NO [SERVERBUG] Internal server
// error", which tells the client to report a bug and the operator nothing
// useful. Every error of the session reaches the library as an
// *imap.Error (imapError, internalError), so that answer comes from the
// library alone (or a connection already broken), and conn turns it into
// the BAD that it is (RFC 9051 section 7.1.5).
var libraryServerBug = []byte(" NO [SERVERBUG] Internal server error\r\n")

// internalText is the text of the session's own SERVERBUG answers.
const internalText = "Internal server error, logged"

// internalError is the answer to a failure of the server (logged by the
// caller).
func internalError() error {
	return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeServerBug, Text: internalText}
}

// fixBadArgs returns line, or the BAD that a tagged library SERVERBUG
// answer stands for.
func fixBadArgs(line []byte) []byte {
	if !bytes.HasSuffix(line, libraryServerBug) || bytes.IndexByte(line, ' ') != len(line)-len(libraryServerBug) {
		return line
	}
	tag := line[:len(line)-len(libraryServerBug)]
	return append(append([]byte(nil), tag...), " BAD [CLIENTBUG] Invalid arguments\r\n"...)
}
