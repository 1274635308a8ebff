package inbound_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/server/authres"
	"github.com/mailctl/mailctl/server/dkim"
	"github.com/mailctl/mailctl/server/inbound"
	"github.com/mailctl/mailctl/server/queue"
)

// publish starts a Knot serving zone with the TXT records (name -> value,
// names relative to the zone, "@" the apex) added by one RFC 2136 update.
func publish(t *testing.T, zone string, txt map[string]string) string {
	t.Helper()
	k := testenv.StartKnot(t, zone)
	m := new(mdns.Msg)
	m.SetUpdate(mdns.Fqdn(zone))
	var rrs []mdns.RR
	for name, v := range txt {
		fq := mdns.Fqdn(zone)
		if name != "@" {
			fq = name + "." + fq
		}
		var parts []string
		for len(v) > 255 {
			parts, v = append(parts, v[:255]), v[255:]
		}
		rrs = append(rrs, &mdns.TXT{Hdr: mdns.RR_Header{Name: fq, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 300}, Txt: append(parts, v)})
	}
	m.Insert(rrs)
	m.SetTsig(k.TSIGName, mdns.Fqdn(k.TSIGAlg), 300, time.Now().Unix())
	c := &mdns.Client{Net: "tcp", TsigSecret: map[string]string{k.TSIGName: k.TSIGSecret}, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, k.Addr)
	if err != nil || r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("update %s: %v %v", zone, err, r)
	}
	return k.Addr
}

// TestEvaluateOwn signs a message as the server does for its own domain and
// checks the Authentication-Results computed for its sending IP against a
// real Knot serving SPF, DKIM and DMARC records.
func TestEvaluateOwn(t *testing.T) {
	t.Parallel()
	keys, err := dkim.Ensure(t.TempDir(), "example.test", []string{"mx1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := dkim.Ensure(t.TempDir(), "example.test", []string{"mx1"})
	if err != nil {
		t.Fatal(err)
	}
	signer := dkim.NewSigner(keys)
	msg := []byte("From: Alice <alice@example.test>\r\nTo: alice@example.test\r\nSubject: probe\r\n" +
		"Message-ID: <probe@example.test>\r\nDate: Mon, 23 Nov 2026 17:00:00 +0000\r\n" +
		"Authentication-Results: mx.example.test; dkim=pass (forged)\r\n\r\nhello\r\n")
	sig, err := signer.Sign(bytes.NewReader(msg))
	if err != nil || sig == "" {
		t.Fatalf("Sign = %q, %v", sig, err)
	}
	signed := append([]byte(sig), msg...)

	good := map[string]string{
		"@":      "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all",
		"_dmarc": "v=DMARC1; p=reject",
	}
	for _, k := range keys {
		good[k.Selector+"._domainkey"] = k.Record
	}
	with := func(change map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range change {
			if v == "" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	wrongKeys := map[string]string{}
	for _, k := range other {
		wrongKeys[k.Selector+"._domainkey"] = k.Record
	}
	v4, v6 := net.ParseIP("192.0.2.25"), net.ParseIP("2001:db8::25")
	cases := []struct {
		name            string
		records         map[string]string
		ips             []net.IP
		spf, dkim, dmrc string
	}{
		{"all pass", good, []net.IP{v4, v6}, "pass", "pass", "pass"},
		{"SPF without the server IP", with(map[string]string{"@": "v=spf1 ip4:198.51.100.1 -all"}), []net.IP{v4}, "fail", "pass", "pass"},
		{"SPF without the IPv6 address", with(map[string]string{"@": "v=spf1 ip4:192.0.2.25 -all"}), []net.IP{v4, v6}, "fail", "pass", "pass"},
		{"wrong DKIM key published", with(wrongKeys), []net.IP{v4}, "pass", "fail", "pass"},
		{"no DKIM key and SPF softfail", with(map[string]string{"@": "v=spf1 ~all", keys[0].Selector + "._domainkey": "", keys[1].Selector + "._domainkey": ""}), []net.IP{v4}, "softfail", "permerror", "fail"},
		{"no DMARC record", with(map[string]string{"_dmarc": ""}), []net.IP{v4}, "pass", "pass", "none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := publish(t, "example.test", tc.records)
			c, err := inbound.New(inbound.Options{Hostname: "mx.example.test",
				Resolver: &queue.DNS{Servers: []string{addr}}, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			header, remove, _, err := c.EvaluateOwn(ctx, inbound.Own{IPs: tc.ips, Helo: "mx.example.test", From: "alice@example.test"},
				bytes.NewReader(signed), int64(len(signed)))
			if err != nil {
				t.Fatalf("EvaluateOwn: %v", err)
			}
			name, value, _ := strings.Cut(strings.TrimSuffix(header, "\r\n"), ":")
			if name != "Authentication-Results" {
				t.Fatalf("header = %q, want an Authentication-Results field", header)
			}
			id, results, err := authres.Parse(value)
			if err != nil || id != "mx.example.test" {
				t.Fatalf("authres.Parse(%q) = %q, %v", value, id, err)
			}
			got := map[string]string{}
			for _, r := range results {
				if _, dup := got[r.Method]; !dup {
					got[r.Method] = r.Value
				}
			}
			want := map[string]string{"spf": tc.spf, "dkim": tc.dkim, "dmarc": tc.dmrc}
			for m, w := range want {
				if got[m] != w {
					t.Errorf("%s = %q, want %q\n%s", m, got[m], w, header)
				}
			}
			// The two signatures (ed25519 and RSA) are told apart by their
			// selector and algorithm.
			var sigs []string
			for _, r := range results {
				if r.Method == "dkim" {
					sigs = append(sigs, r.Props["header.d"]+" s="+r.Props["header.s"]+" a="+r.Props["header.a"])
				}
			}
			var wantSigs []string
			for _, k := range keys {
				alg := "rsa-sha256"
				if k.Algorithm == dkim.Ed25519 {
					alg = "ed25519-sha256"
				}
				wantSigs = append(wantSigs, "example.test s="+k.Selector+" a="+alg)
			}
			slices.Sort(sigs)
			slices.Sort(wantSigs)
			if !slices.Equal(sigs, wantSigs) {
				t.Errorf("dkim results = %q, want %q\n%s", sigs, wantSigs, header)
			}
			if got["spf"] == "pass" && !strings.Contains(header, "smtp.mailfrom=alice@example.test") {
				t.Errorf("header does not name the envelope sender:\n%s", header)
			}
			// The forged field claiming this server's authserv-id goes.
			var kept bytes.Buffer
			var off int64
			for _, r := range remove {
				kept.Write(signed[off:r[0]])
				off = r[1]
			}
			kept.Write(signed[off:])
			if strings.Contains(kept.String(), "(forged)") {
				t.Errorf("remove = %v leaves the forged field in:\n%s", remove, kept.String())
			}
		})
	}
}
