package web_test

import (
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/mtasts"
	"github.com/mailctl/mailctl/server/web"
)

func testConfig() *config.Config {
	return &config.Config{
		FormatVersion: config.FormatVersion,
		Hostname:      "mail.example.test",
		Listen: config.Listen{SMTP: ":25", Submission: ":587", Submissions: ":465",
			IMAP: ":143", IMAPS: ":993", HTTPS: ":443", HTTP: ":80"},
		Domains: []config.Domain{
			{Name: "example.test", MTASTSMode: "enforce", MTASTSMaxAge: 86400},
			{Name: "other.test"},
		},
	}
}

type response struct {
	status int
	ctype  string
	body   string
}

func do(t *testing.T, srv *httptest.Server, method, host, path, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b)}
}

func TestMTASTSPolicy(t *testing.T) {
	d := config.Domain{Name: "example.test", MTASTSMode: "testing", MTASTSMaxAge: 86400}
	text, id := web.MTASTSPolicy("mail.example.test", d)
	want := "version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 86400\r\n"
	if text != want {
		t.Errorf("MTASTSPolicy text = %q, want %q", text, want)
	}
	if _, wantID := mtasts.Policy("testing", []string{"mail.example.test"}, 86400); id != wantID {
		t.Errorf("MTASTSPolicy id = %q, want mtasts.Policy's %q", id, wantID)
	}
	d.MTASTSMode = "enforce"
	if _, id2 := web.MTASTSPolicy("mail.example.test", d); id2 == id {
		t.Error("another mode gives the same policy id")
	}
}

// TestMTASTSPolicyServers: a domain served by several servers gets a
// policy with one mx line per server, in order (RFC 8461 section 3.2), over
// HTTPS as a sender fetches it; its id differs from the one-server policy,
// so that senders refetch it when the list changes.
func TestMTASTSPolicyServers(t *testing.T) {
	cfg := testConfig()
	_, oneID := web.MTASTSPolicy(cfg.Hostname, cfg.Domains[0])
	cfg.Domains[0].MTASTSMX = []string{"mx1.example.test", "Mail.Example.test"}
	srv := httptest.NewTLSServer(web.New(cfg, web.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()

	got := do(t, srv, "GET", "mta-sts.example.test", "/.well-known/mta-sts.txt", "")
	want := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: mail.example.test\r\nmax_age: 86400\r\n"
	if got.status != 200 || got.body != want {
		t.Fatalf("policy = %d %q, want 200 %q", got.status, got.body, want)
	}
	p, err := mtasts.Parse(got.body, mtasts.Strict)
	if err != nil || !slices.Equal(p.MX, []string{"mail.example.test", "mx1.example.test"}) {
		t.Errorf("Parse(policy) = %+v, %v; want both MX", p, err)
	}
	text, id := web.MTASTSPolicy(cfg.Hostname, cfg.Domains[0])
	if text != want {
		t.Errorf("MTASTSPolicy text = %q, want the served %q", text, want)
	}
	if id == oneID {
		t.Errorf("id %q is the one-server policy's: senders would keep the old policy", id)
	}
	if _, wantID := mtasts.Policy("enforce", []string{"mx1.example.test", "mail.example.test"}, 86400); id != wantID {
		t.Errorf("id = %q, want mtasts.Policy's %q", id, wantID)
	}
}

func TestEndpoints(t *testing.T) {
	cfg := testConfig()
	metrics := web.NewMetrics()
	var healthErr error
	h := web.New(cfg, web.Options{Metrics: metrics, Health: func() error { return healthErr },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()

	policy, _ := web.MTASTSPolicy(cfg.Hostname, cfg.Domains[0])
	tests := []struct {
		name, method, host, path, body string
		status                         int
		ctype                          string
		contains                       []string
		exact                          string
	}{
		{name: "mta-sts policy", method: "GET", host: "mta-sts.example.test", path: "/.well-known/mta-sts.txt",
			status: 200, ctype: "text/plain", exact: policy},
		{name: "mta-sts with port and case", method: "GET", host: "MTA-STS.Example.Test:443", path: "/.well-known/mta-sts.txt",
			status: 200, exact: policy},
		{name: "mta-sts for a domain without policy", method: "GET", host: "mta-sts.other.test", path: "/.well-known/mta-sts.txt", status: 404},
		{name: "mta-sts on another host", method: "GET", host: "mail.example.test", path: "/.well-known/mta-sts.txt", status: 404},
		{name: "mta-sts unknown domain", method: "GET", host: "mta-sts.nowhere.test", path: "/.well-known/mta-sts.txt", status: 404},
		{name: "autoconfig by host", method: "GET", host: "autoconfig.example.test", path: "/mail/config-v1.1.xml",
			status: 200, ctype: "application/xml; charset=utf-8",
			contains: []string{`<clientConfig version="1.1">`, `<emailProvider id="example.test">`,
				`<incomingServer type="imap">`, "<port>993</port>", "<socketType>SSL</socketType>",
				`<outgoingServer type="smtp">`, "<port>465</port>", "<port>587</port>", "<socketType>STARTTLS</socketType>",
				"<hostname>mail.example.test</hostname>", "<username>%EMAILADDRESS%</username>"}},
		{name: "autoconfig well-known by address", method: "GET", host: "mail.example.test",
			path:   "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob%40other.test",
			status: 200, contains: []string{`<emailProvider id="other.test">`}},
		{name: "autoconfig unknown domain", method: "GET", host: "autoconfig.nowhere.test", path: "/mail/config-v1.1.xml", status: 404},
		{name: "autodiscover", method: "POST", host: "autodiscover.example.test", path: "/autodiscover/autodiscover.xml",
			body:   `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`,
			status: 200, contains: []string{`<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">`,
				`<Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">`,
				"<Type>IMAP</Type>", "<Port>993</Port>", "<Type>SMTP</Type>", "<Port>465</Port>",
				"<LoginName>alice@example.test</LoginName>", "<Server>mail.example.test</Server>", "<SSL>on</SSL>"}},
		{name: "autodiscover unknown domain", method: "POST", host: "autodiscover.example.test", path: "/autodiscover/autodiscover.xml",
			body: `<Autodiscover><Request><EMailAddress>x@nowhere.test</EMailAddress></Request></Autodiscover>`, status: 404},
		{name: "autodiscover garbage", method: "POST", host: "autodiscover.example.test", path: "/autodiscover/autodiscover.xml",
			body: `not xml`, status: 400},
		{name: "healthz", method: "GET", host: "mail.example.test", path: "/healthz", status: 200, exact: "ok\n"},
		{name: "metrics from loopback", method: "GET", host: "mail.example.test", path: "/metrics", status: 200,
			contains: []string{`mailctl_connections_total{service="smtp"} 2`, `mailctl_deliveries_total{result="delivered"} 1`,
				`mailctl_auth_failures_total{service="imap"} 1`, "mailctl_queue_messages 3", "mailctl_store_bytes 12345", "go_goroutines"}},
		{name: "unknown path", method: "GET", host: "mail.example.test", path: "/nope", status: 404},
	}
	metrics.Connection("smtp")
	metrics.Connection("smtp")
	metrics.Delivery("delivered")
	metrics.AuthFailure("imap")
	metrics.SetQueueSize(3)
	metrics.SetStoreSize(func() int64 { return 12345 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, srv, tt.method, tt.host, tt.path, tt.body)
			if got.status != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", got.status, tt.status, got.body)
			}
			if tt.ctype != "" && got.ctype != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", got.ctype, tt.ctype)
			}
			if tt.exact != "" && got.body != tt.exact {
				t.Errorf("body = %q, want %q", got.body, tt.exact)
			}
			for _, c := range tt.contains {
				if !strings.Contains(got.body, c) {
					t.Errorf("body lacks %q:\n%s", c, got.body)
				}
			}
			if tt.status == 200 && strings.Contains(got.ctype, "xml") {
				if err := xml.Unmarshal([]byte(got.body), new(struct{})); err != nil {
					t.Errorf("response is not well-formed XML: %v", err)
				}
			}
		})
	}

	t.Run("unhealthy", func(t *testing.T) {
		healthErr = errors.New("store closed")
		defer func() { healthErr = nil }()
		if got := do(t, srv, "GET", "mail.example.test", "/healthz", ""); got.status != 503 {
			t.Errorf("status = %d, want 503", got.status)
		}
	})

	t.Run("reload", func(t *testing.T) {
		next := testConfig()
		next.Domains[1].MTASTSMode = "testing"
		h.SetConfig(next)
		got := do(t, srv, "GET", "mta-sts.other.test", "/.well-known/mta-sts.txt", "")
		if !strings.Contains(got.body, "mode: testing") {
			t.Errorf("after SetConfig got %d %q, want the other.test policy", got.status, got.body)
		}
	})
}

func TestRedirect(t *testing.T) {
	for _, tt := range []struct {
		port int
		want string
	}{{443, "https://mail.example.test/x?y=1"}, {8443, "https://mail.example.test:8443/x?y=1"}} {
		srv := httptest.NewServer(web.RedirectHandler(tt.port))
		req, _ := http.NewRequest("GET", srv.URL+"/x?y=1", nil)
		req.Host = "mail.example.test:80"
		resp, err := http.DefaultTransport.RoundTrip(req)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != tt.want {
			t.Errorf("redirect = %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), tt.want)
		}
	}
}
