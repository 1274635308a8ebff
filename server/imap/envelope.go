package imap

import (
	"encoding/binary"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// The ENVELOPE of a message (RFC 9051 section 7.5.2) is computed once, at
// delivery, and kept in the store beside the header (store.SetHeaderSummary),
// in this encoding, so that FETCH ENVELOPE parses nothing:
//
//	byte     version (1)
//	byte     1 if there is a date, then: varint Unix seconds,
//	         varint zone offset in seconds
//	string   subject, message-id
//	list     in-reply-to (uvarint count, strings)
//	6 lists  from, sender, reply-to, to, cc, bcc (uvarint count, then
//	         name, mailbox, host of each)
//
// where a string is a uvarint length and its bytes. Anything that does not
// decode is recomputed from the header.
const envelopeVersion = 1

// summarizeHeader is the store's header summary: the encoded ENVELOPE.
func summarizeHeader(hdr []byte) []byte { return encodeEnvelope(envelopeBytes(hdr)) }

func encodeEnvelope(env *goimap.Envelope) []byte {
	b := make([]byte, 0, 256)
	b = append(b, envelopeVersion)
	if env.Date.IsZero() {
		b = append(b, 0)
	} else {
		_, off := env.Date.Zone()
		b = append(b, 1)
		b = binary.AppendVarint(b, env.Date.Unix())
		b = binary.AppendVarint(b, int64(off))
	}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(env.Subject)
	str(env.MessageID)
	b = binary.AppendUvarint(b, uint64(len(env.InReplyTo)))
	for _, s := range env.InReplyTo {
		str(s)
	}
	for _, list := range [][]goimap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, a := range list {
			str(a.Name)
			str(a.Mailbox)
			str(a.Host)
		}
	}
	return b
}

// decodeEnvelope decodes what encodeEnvelope made; ok is false for
// anything else.
func decodeEnvelope(b []byte) (env *goimap.Envelope, ok bool) {
	if len(b) < 2 || b[0] != envelopeVersion {
		return nil, false
	}
	hasDate := b[1]
	b = b[2:]
	bad := false
	varint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	count := func() int {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > uint64(len(b)) {
			bad = true
			return 0
		}
		b = b[n:]
		return int(v)
	}
	str := func() string {
		n := count()
		if bad || n > len(b) {
			bad = true
			return ""
		}
		s := string(b[:n])
		b = b[n:]
		return s
	}
	env = &goimap.Envelope{}
	switch hasDate {
	case 0:
	case 1:
		sec, off := varint(), varint()
		if off < -24*3600 || off > 24*3600 {
			return nil, false
		}
		env.Date = time.Unix(sec, 0).In(fixedZone(int(off)))
	default:
		return nil, false
	}
	env.Subject = str()
	env.MessageID = str()
	if n := count(); n > 0 {
		env.InReplyTo = make([]string, n)
		for i := range env.InReplyTo {
			env.InReplyTo[i] = str()
		}
	}
	for _, list := range []*[]goimap.Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		n := count()
		if n == 0 {
			continue
		}
		*list = make([]goimap.Address, n)
		for i := range *list {
			(*list)[i] = goimap.Address{Name: str(), Mailbox: str(), Host: str()}
		}
	}
	if bad || len(b) != 0 {
		return nil, false
	}
	return env, true
}

// zones holds the *time.Location of the offsets that decodeEnvelope met,
// whole quarters of an hour (every zone in use, at most 193 of them):
// time.FixedZone makes a new one (three allocations) at every call.
var zones sync.Map // int -> *time.Location

func fixedZone(off int) *time.Location {
	if off%900 != 0 {
		return time.FixedZone("", off)
	}
	if z, ok := zones.Load(off); ok {
		return z.(*time.Location)
	}
	z, _ := zones.LoadOrStore(off, time.FixedZone("", off))
	return z.(*time.Location)
}
