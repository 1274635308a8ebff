package imap

// HeaderSummary is the summary of a message header that the IMAP server
// has its store keep beside each message (store.Backend.SetHeaderSummary:
// the encoded ENVELOPE), for tools that write messages while no server
// runs (`mailctl store copy`), so that FETCH ENVELOPE of those messages
// needs no header parsing either.
func HeaderSummary(header []byte) []byte { return summarizeHeader(header) }
