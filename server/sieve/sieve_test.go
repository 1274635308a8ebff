package sieve

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func msgOf(lines ...string) *Message {
	return ParseMessage([]byte(strings.Join(lines, "\r\n")))
}

var defaultMsg = msgOf(
	"From: Wile E. Coyote <coyote@desert.example.org>",
	"To: me@example.com",
	"Subject: I have a present for you",
	"Message-ID: <1@desert.example.org>",
	"",
	"Look, I'm sorry about the whole anvil thing.",
	"")

func run(t *testing.T, src string, m *Message, env Envelope) []Action {
	t.Helper()
	s, err := Compile("test.sieve", src)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	res, err := s.Run(context.Background(), m, env, RunOptions{Now: time.Date(2007, 7, 1, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res.Actions
}

var implicitKeep = Keep{Implicit: true}

func TestRFC5228Section9(t *testing.T) {
	// The example script of RFC 5228 section 9.
	src := `#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
`
	cases := []struct {
		name string
		msg  *Message
		want []Action
	}{
		{"list", msgOf("Sender: owner-ietf-mta-filters@imc.org", "", ""), []Action{FileInto{Mailbox: "filter"}}},
		{"company", msgOf("From: boss@example.com", "To: x@y.org", "", ""), []Action{Keep{}}},
		{"not to me", msgOf("From: a@b.org", "To: other@b.org", "", ""), []Action{FileInto{Mailbox: "spam"}}},
		{"spam subject", msgOf("From: a@b.org", "To: x@b.org", "Cc: Me <me@example.com>", "Subject: MAKE lots of MONEY FAST!", "", ""), []Action{FileInto{Mailbox: "spam"}}},
		{"personal", msgOf("From: a@b.org", "Cc: me@example.com", "Subject: hi", "", ""), []Action{FileInto{Mailbox: "personal"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(t, src, c.msg, Envelope{}); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestRFC5228Examples(t *testing.T) {
	big := msgOf("Subject: x", "", strings.Repeat("x", 200*1024))
	cases := []struct {
		name string
		src  string
		msg  *Message
		env  Envelope
		want []Action
	}{
		{"2.10.2 implicit keep", `# nothing`, defaultMsg, Envelope{}, []Action{implicitKeep}},
		{"size over 100K discard", `if size :over 100K { discard; }`, big, Envelope{}, []Action{Discard{}}},
		{"size under 100K", `if size :over 100K { discard; }`, defaultMsg, Envelope{}, []Action{implicitKeep}},
		{"3.1 elsif chain", `if header :contains ["From"] ["coyote"] {
   redirect "acm@example.com";
} elsif header :contains "Subject" "$$$" {
   redirect "postmaster@example.com";
} else {
   redirect "field@example.com";
}`, defaultMsg, Envelope{}, []Action{Redirect{Address: "acm@example.com"}}},
		{"3.3 stop", `keep; stop; discard;`, defaultMsg, Envelope{}, []Action{Keep{}}},
		{"4.2 redirect", `redirect "bart@example.com";`, defaultMsg, Envelope{}, []Action{Redirect{Address: "bart@example.com"}}},
		{"5.2 address :domain", `if address :is :domain "from" "desert.example.org" { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"5.3 allof", `if allof (header :contains "From" "coyote", header :contains "Subject" "present") { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"5.5 exists", `if not exists ["From","Date"] { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"5.4 envelope", `require "envelope"; if envelope :all :is "from" "tim@example.com" { discard; }`, defaultMsg,
			Envelope{From: "tim@example.com"}, []Action{Discard{}}},
		{"null reverse path", `require "envelope"; if envelope :localpart :is "from" "" { discard; }`, defaultMsg,
			Envelope{From: ""}, []Action{Discard{}}},
		{"2.4.2 multi-line", "require \"fileinto\";\nfileinto text:\n..dotted\n.\n;", defaultMsg, Envelope{},
			[]Action{FileInto{Mailbox: ".dotted\r\n"}}},
		{"2.7.1 octet vs casemap", `if header :is :comparator "i;octet" "subject" "i have a present for you" { discard; }`,
			defaultMsg, Envelope{}, []Action{implicitKeep}},
		{"escapes", `if header :contains "subject" "\p\r\e\s\e\n\t" { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"matches ? and escaped *", `if header :matches "subject" "I hav? a*" { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"matches literal star", `if header :matches "subject" "I have\\*" { discard; }`, defaultMsg, Envelope{}, []Action{implicitKeep}},
		{"duplicate keep", `keep; keep;`, defaultMsg, Envelope{}, []Action{Keep{}}},
		{"encoded word", `if header :contains "subject" "café" { discard; }`,
			msgOf("Subject: =?utf-8?q?caf=C3=A9?=", "", ""), Envelope{}, []Action{Discard{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(t, c.src, c.msg, c.env); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestExtensionExamples(t *testing.T) {
	rel := msgOf(
		"Received: from a by b; Wed, 1 Jan 2020 00:00:00 +0000",
		"Received: from c by d; Wed, 1 Jan 2020 00:00:00 +0000",
		"To: foo@example.com.invalid, baz@example.com.invalid",
		"Cc: qux@example.com.invalid",
		"From: boss@example.com",
		"Subject: [acme-users] [fwd] version 1.0 is out",
		"List-ID: Acme users <acme-users@lists.example.org>",
		"Date: Tue, 3 Jul 2007 10:30:00 -0700",
		"X-Priority: 1",
		"Content-Type: multipart/mixed; boundary=b",
		"",
		"--b",
		"Content-Type: text/plain; charset=iso-8859-1",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"Please MAKE MONEY FAST, caf=E9",
		"--b",
		"Content-Type: application/octet-stream",
		"",
		"binary",
		"--b--",
		"")
	cases := []struct {
		name string
		src  string
		msg  *Message
		env  Envelope
		want []Action
	}{
		{"RFC 3894 copy", `require ["copy", "fileinto"]; fileinto :copy "incoming";`, defaultMsg, Envelope{},
			[]Action{FileInto{Mailbox: "incoming"}, implicitKeep}},
		{"RFC 3894 redirect copy", `require "copy"; redirect :copy "a@b.example";`, defaultMsg, Envelope{},
			[]Action{Redirect{Address: "a@b.example"}, implicitKeep}},
		{"RFC 5231 count to+cc ge 3", `require ["relational","comparator-i;ascii-numeric"];
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"] { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5231 count to ge 3", `require ["relational","comparator-i;ascii-numeric"];
if address :count "ge" :comparator "i;ascii-numeric" ["to"] ["3"] { discard; }`, rel, Envelope{}, []Action{implicitKeep}},
		{"RFC 5231 count received ge 3", `require ["relational","comparator-i;ascii-numeric"];
if header :count "ge" :comparator "i;ascii-numeric" ["received"] ["3"] { discard; }`, rel, Envelope{}, []Action{implicitKeep}},
		{"RFC 5231 value lt", `require ["relational","comparator-i;ascii-numeric"];
if header :value "lt" :comparator "i;ascii-numeric" ["x-priority"] ["3"] { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5231 value gt", `require ["relational","comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" ["x-priority"] ["3"] { discard; }`, rel, Envelope{}, []Action{implicitKeep}},
		{"RFC 5229 list-id", `require ["fileinto", "variables"];
if header :matches "List-ID" "*<*@*" { fileinto "INBOX.lists.${2}"; stop; }`, rel, Envelope{},
			[]Action{FileInto{Mailbox: "INBOX.lists.acme-users"}}},
		{"RFC 5229 subject", `require ["fileinto", "variables"];
if header :matches "Subject" "[*] *" { fileinto "INBOX.lists.${1}/${2}"; stop; }`, rel, Envelope{},
			[]Action{FileInto{Mailbox: "INBOX.lists.acme-users/[fwd] version 1.0 is out"}}},
		{"RFC 5229 ** is empty", `require ["fileinto", "variables"];
if address :matches ["To", "Cc"] ["coyote@**.com", "wile@**.com"] { fileinto "INBOX.business.${2}[${1}]"; stop; }`,
			msgOf("To: coyote@ACME.Example.COM", "", ""), Envelope{}, []Action{FileInto{Mailbox: "INBOX.business.ACME.Example[]"}}},
		{"RFC 5229 set text", `require ["variables", "fileinto"];
set "honorific"  "Mr";
set "first_name" "Wile";
set "last_name"  "Coyote";
set "vacation" text:
Dear ${HONORIFIC} ${last_name},
I'm out, please leave a message after the meep.
.
;
fileinto "${vacation}";`, defaultMsg, Envelope{},
			[]Action{FileInto{Mailbox: "Dear Mr Coyote,\r\nI'm out, please leave a message after the meep.\r\n"}}},
		{"RFC 5229 modifiers", `require ["variables", "fileinto"];
set "a" "juMBlEd lETteRS";
set :length "b" "${a}"; fileinto "${b}";
set :lower "b" "${a}"; fileinto "${b}";
set :upperfirst "b" "${a}"; fileinto "${b}";
set :upperfirst :lower "b" "${a}"; fileinto "${b}";
set :quotewildcard "b" "Rock*"; fileinto "${b}";`, defaultMsg, Envelope{},
			[]Action{FileInto{Mailbox: "15"}, FileInto{Mailbox: "jumbled letters"}, FileInto{Mailbox: "JuMBlEd lETteRS"},
				FileInto{Mailbox: "Jumbled letters"}, FileInto{Mailbox: `Rock\*`}}},
		{"RFC 5229 string test", `require "variables"; set "x" "abc"; if string :is "${x}" "abc" { discard; }`, defaultMsg, Envelope{}, []Action{Discard{}}},
		{"RFC 5233 user", `require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "postmaster" { fileinto "inbox.postmaster"; stop; }
if envelope :detail :is "to" "mta-filters" { fileinto "inbox.ietf-mta-filters"; stop; }`, defaultMsg,
			Envelope{To: "postmaster+x@example.com"}, []Action{FileInto{Mailbox: "inbox.postmaster"}}},
		{"RFC 5233 detail", `require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "postmaster" { fileinto "inbox.postmaster"; stop; }
if envelope :detail :is "to" "mta-filters" { fileinto "inbox.ietf-mta-filters"; stop; }`, defaultMsg,
			Envelope{To: "ken+mta-filters@example.com"}, []Action{FileInto{Mailbox: "inbox.ietf-mta-filters"}}},
		{"RFC 5233 no detail", `require ["envelope", "subaddress"]; if envelope :detail :is "to" "" { discard; }`, defaultMsg,
			Envelope{To: "ken@example.com"}, []Action{implicitKeep}},
		{"RFC 5173 raw", `require "body"; if body :raw :contains "MAKE MONEY FAST" { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5173 text decoded", `require "body"; if body :text :contains "café" { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5173 content", `require "body"; if body :content "application" :contains "binary" { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5173 text excludes binary", `require "body"; if body :text :contains "binary" { discard; }`, rel, Envelope{}, []Action{implicitKeep}},
		{"RFC 5232 flags", `require ["imap4flags", "fileinto"];
if header :contains "from" "boss@example.com" { addflag "\\Flagged $Work"; addflag "\\flagged"; fileinto "work"; }
removeflag "$Work"; keep :flags "\\Seen";`, rel, Envelope{},
			[]Action{FileInto{Mailbox: "work", Flags: []string{`\Flagged`, "$Work"}}, Keep{Flags: []string{`\Seen`}}}},
		{"RFC 5232 implicit keep flags", `require "imap4flags"; setflag "\\Seen"; if hasflag :contains "seen" { addflag "x"; }`,
			defaultMsg, Envelope{}, []Action{Keep{Flags: []string{`\Seen`, "x"}, Implicit: true}}},
		{"RFC 5260 originalzone", `require ["date", "relational", "fileinto"];
if allof(header :is "from" "boss@example.com",
         date :value "ge" :originalzone "date" "hour" "09",
         date :value "lt" :originalzone "date" "hour" "17")
{ fileinto "urgent"; }`, rel, Envelope{}, []Action{FileInto{Mailbox: "urgent"}}},
		{"RFC 5260 zone", `require ["date"]; if date :zone "+0000" "date" "hour" "17" { discard; }`, rel, Envelope{}, []Action{Discard{}}},
		{"RFC 5260 currentdate vacation", `require ["date", "relational", "vacation"];
if allof(currentdate :value "ge" "date" "2007-06-30",
         currentdate :value "le" "date" "2007-07-07")
{ vacation :days 7  "I'm away during the first week in July."; }`, defaultMsg, Envelope{},
			[]Action{Vacation{Days: 7, Reason: "I'm away during the first week in July."}, implicitKeep}},
		{"RFC 5230 subject variable", `require ["vacation", "variables"];
if header :matches "subject" "*" {
    vacation :subject "Automatic response to: ${1}"
        "I'm away -- send mail to foo in my absence";
}`, defaultMsg, Envelope{}, []Action{Vacation{Days: 7, Subject: "Automatic response to: I have a present for you",
			Reason: "I'm away -- send mail to foo in my absence"}, implicitKeep}},
		{"RFC 5230 addresses", `require "vacation";
vacation :days 23 :addresses ["tjs@example.edu",
                              "ts4z@landru.example.edu"]
   "I'm away until October 19.
   If it's an emergency, call 911, I guess." ;`, defaultMsg, Envelope{}, []Action{Vacation{Days: 23,
			Addresses: []string{"tjs@example.edu", "ts4z@landru.example.edu"},
			Reason:    "I'm away until October 19.\n   If it's an emergency, call 911, I guess."}, implicitKeep}},
		{"RFC 5429 reject", "require [\"reject\"];\nif size :over 1 {\n    reject text:\nYour message is too big.\n.\n;\n}", defaultMsg, Envelope{},
			[]Action{Reject{Reason: "Your message is too big.\r\n"}}},
		{"RFC 5429 ereject", `require "ereject"; ereject "no";`, defaultMsg, Envelope{}, []Action{Reject{Reason: "no", Extended: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(t, c.src, c.msg, c.env); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`fileinto "x";`, `a.sieve:1:1: fileinto needs require "fileinto"`},
		{"keep;\nrequire \"fileinto\";", `a.sieve:2:1: require must come before any other command`},
		{"if header :is \"a\" {\n  keep\n}", `a.sieve:3:1: expected ";" or "{" after command "keep", found "}"`},
		{`require "foo";`, `a.sieve:1:9: require: unsupported extension "foo"`},
		{`if header :frob "a" "b" {}`, `a.sieve:1:11: header: unknown tag :frob`},
		{`if header :is :contains "a" "b" {}`, `a.sieve:1:15: header: :is and :contains are both a match type`},
		{`if size 10 {}`, `a.sieve:1:4: size: needs :over or :under`},
		{`frobnicate;`, `a.sieve:1:1: unknown command "frobnicate"`},
		{"keep;\n  \"x", `a.sieve:2:3: unterminated string`},
		{`redirect "not an address";`, `a.sieve:1:10: redirect: "not an address" is not a valid address`},
		{`if header :value "gt" "a" "b" {}`, `a.sieve:1:11: :value needs require "relational"`},
		{"/* open", `a.sieve:1:1: unterminated comment`},
		{"else { keep; }", `a.sieve:1:1: else without a preceding if`},
		// every validation error, not only the first
		{"fileinto \"a\";\nfrob;\nif true { discard \"x\"; }",
			"a.sieve:1:1: fileinto needs require \"fileinto\"\na.sieve:2:1: unknown command \"frob\"\na.sieve:3:11: discard: takes 0 positional arguments, found 1"},
	}
	for _, c := range cases {
		_, err := Compile("a.sieve", c.src)
		if err == nil {
			t.Errorf("%q: no error, want %q", c.src, c.want)
			continue
		}
		var el ErrorList
		if !errors.As(err, &el) {
			t.Errorf("%q: error %T is not an ErrorList", c.src, err)
		}
		if err.Error() != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.src, err.Error(), c.want)
		}
	}
}

func TestRunConflicts(t *testing.T) {
	s, err := Compile("c", `require ["reject", "fileinto"]; fileinto "a"; reject "no";`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), defaultMsg, Envelope{}, RunOptions{}); err == nil ||
		!strings.Contains(err.Error(), "reject used with") {
		t.Fatalf("err = %v, want a conflict", err)
	}
}

func TestLimits(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		_, err := CompileLimits("big", strings.Repeat("keep;", 100), Limits{MaxScriptBytes: 100})
		if err == nil || !strings.Contains(err.Error(), "big:1:1: script is 500 bytes, more than the limit of 100") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("nesting", func(t *testing.T) {
		src := strings.Repeat("if true {", 40) + strings.Repeat("}", 40)
		_, err := Compile("deep", src)
		if err == nil || !strings.Contains(err.Error(), "nesting deeper than 32 levels") {
			t.Fatalf("err = %v", err)
		}
		src = "if " + strings.Repeat("not ", 40) + "true {}"
		if _, err = Compile("deep", src); err == nil || !strings.Contains(err.Error(), "nesting deeper") {
			t.Fatalf("nested tests: err = %v", err)
		}
	})
	t.Run("redirects", func(t *testing.T) {
		var src strings.Builder
		for i := range 5 {
			fmt.Fprintf(&src, "redirect \"u%d@example.com\";\n", i)
		}
		s, err := Compile("r", src.String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Run(context.Background(), defaultMsg, Envelope{}, RunOptions{})
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "more than 4 redirects") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("steps", func(t *testing.T) {
		// A pattern that backtracks on a long subject.
		m := msgOf("Subject: "+strings.Repeat("a", 20000), "", "")
		s, err := CompileLimits("s", `if header :matches "subject" "*`+strings.Repeat("a", 50)+`b" { discard; }`, Limits{MaxSteps: 100000})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = s.Run(context.Background(), m, Envelope{}, RunOptions{})
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("err = %v, want a step limit", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("variables", func(t *testing.T) {
		s, err := Compile("v", `require ["variables","fileinto"]; set "a" "${b}"; set "b" "x"; `+
			strings.Repeat(`set "b" "${b}${b}";`, 20)+` set :length "n" "${b}"; fileinto "${n}";`)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(context.Background(), defaultMsg, Envelope{}, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Actions[0].(FileInto).Mailbox; got != "4096" {
			t.Fatalf("length = %s, want capped at 4096", got)
		}
	})
}

func TestAutoReplyAllowed(t *testing.T) {
	own := []string{"me@example.com"}
	cases := []struct {
		name    string
		msg     *Message
		from    string
		allowed bool
	}{
		{"plain", msgOf("To: Me <me@example.com>", "", ""), "a@b.org", true},
		{"cc", msgOf("To: x@y.org", "Cc: me@example.com", "", ""), "a@b.org", true},
		{"not addressed", msgOf("To: x@y.org", "", ""), "a@b.org", false},
		{"null sender", msgOf("To: me@example.com", "", ""), "", false},
		{"list-id", msgOf("To: me@example.com", "List-Id: <l.example.org>", "", ""), "a@b.org", false},
		{"precedence bulk", msgOf("To: me@example.com", "Precedence: bulk", "", ""), "a@b.org", false},
		{"auto-submitted", msgOf("To: me@example.com", "Auto-Submitted: auto-replied", "", ""), "a@b.org", false},
		{"auto-submitted no", msgOf("To: me@example.com", "Auto-Submitted: no", "", ""), "a@b.org", true},
		{"owner-", msgOf("To: me@example.com", "", ""), "owner-list@b.org", false},
		{"-request", msgOf("To: me@example.com", "", ""), "list-request@b.org", false},
		{"mailer-daemon", msgOf("To: me@example.com", "", ""), "MAILER-DAEMON@b.org", false},
	}
	for _, c := range cases {
		if got, why := AutoReplyAllowed(c.msg, c.from, own, Vacation{}); got != c.allowed {
			t.Errorf("%s: allowed = %v (%s), want %v", c.name, got, why, c.allowed)
		}
	}
}

func TestVacationCompose(t *testing.T) {
	m := msgOf("From: a@b.org", "To: me@example.com", "Subject: lunch?", "Message-ID: <x@b.org>", "References: <w@b.org>", "", "")
	out := string(Vacation{Reason: "Away until Monday."}.Compose(m, "me@example.com", "a@b.org", "<r@example.com>",
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	for _, want := range []string{"From: me@example.com\r\n", "To: a@b.org\r\n", "Subject: Auto: lunch?\r\n",
		"In-Reply-To: <x@b.org>\r\n", "References: <w@b.org> <x@b.org>\r\n", "Auto-Submitted: auto-replied",
		"\r\n\r\nAway until Monday.\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("reply lacks %q:\n%s", want, out)
		}
	}
}

// TestSubaddressDelimiters: :user and :detail follow the server's
// recipient_delimiter: any of several characters (the first one found),
// or none at all.
func TestSubaddressDelimiters(t *testing.T) {
	s, err := Compile("d.sieve", `require ["envelope", "subaddress", "fileinto"];
if envelope :detail "to" "lists" { fileinto "Lists"; }
elsif envelope :user "to" "alice-lists" { fileinto "Whole"; }`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		to   string
		opt  RunOptions
		want string // the mailbox, "" for the implicit keep
	}{
		{"alice+lists@example.org", RunOptions{}, "Lists"},
		{"alice-lists@example.org", RunOptions{}, "Whole"},
		{"alice-lists@example.org", RunOptions{SubaddressSep: "+-"}, "Lists"},
		{"alice+lists@example.org", RunOptions{SubaddressSep: "-"}, ""},
		{"alice-lists@example.org", RunOptions{NoSubaddress: true}, "Whole"},
		{"alice+lists@example.org", RunOptions{NoSubaddress: true}, ""},
	} {
		res, err := s.Run(context.Background(), defaultMsg, Envelope{From: "a@b.example", To: c.to}, c.opt)
		if err != nil {
			t.Fatalf("%s %+v: %v", c.to, c.opt, err)
		}
		got := ""
		for _, a := range res.Actions {
			if f, ok := a.(FileInto); ok {
				got = f.Mailbox
			}
		}
		if got != c.want {
			t.Errorf("to %s with %+v: filed into %q, want %q (actions %+v)", c.to, c.opt, got, c.want, res.Actions)
		}
	}
}
