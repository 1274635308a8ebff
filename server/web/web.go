// Package web serves the mail server's HTTPS endpoints:
//
//   - the MTA-STS policy (RFC 8461) at https://mta-sts.<domain>/.well-known/mta-sts.txt;
//   - Thunderbird autoconfig (config-v1.1.xml) at /mail/config-v1.1.xml and
//     /.well-known/autoconfig/mail/config-v1.1.xml, advertising IMAP over
//     implicit TLS and submission over implicit TLS and STARTTLS (RFC 8314),
//     with the CalDAV and CardDAV URLs when they are served;
//   - Outlook autodiscover (POX) at /autodiscover/autodiscover.xml;
//   - an Apple configuration profile at /mail.mobileconfig?emailaddress=A
//     (IMAP, SMTP, CalDAV and CardDAV accounts; mobileconfig.go);
//   - CalDAV and CardDAV under /dav/ (server/dav), with the RFC 6764
//     /.well-known/caldav and /.well-known/carddav redirects;
//   - /healthz, and Prometheus /metrics (loopback clients only).
//
// The plain http listener only solves ACME HTTP-01 challenges (see
// server/tlsconf) and redirects everything else to https.
package web

import (
	"encoding/xml"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/mailctl/mailctl/server/config"
	"github.com/mailctl/mailctl/server/mtasts"
)

// MTASTSPolicy returns the MTA-STS policy text that this server serves for
// domain d, and its id (a digest of the text). The policy has one mx line
// per name of d.MTASTSMX (a domain of several servers), or names hostname
// alone when that list is empty. The provisioner publishes
// `_mta-sts TXT "v=STSv1; id=<id>"` from the same function, so the two
// always agree. A domain without a mode gets "none".
func MTASTSPolicy(hostname string, d config.Domain) (text, id string) {
	mode := d.MTASTSMode
	if mode == "" {
		mode = "none"
	}
	mx := d.MTASTSMX
	if len(mx) == 0 {
		mx = []string{hostname}
	}
	return mtasts.Policy(mode, mx, d.MTASTSMaxAge)
}

// Options configure the handler.
type Options struct {
	// Metrics are served at /metrics when set.
	Metrics *Metrics
	// Health reports whether the server is healthy (nil = always).
	Health func() error
	Logger *slog.Logger
	// DAV, when set, serves CalDAV and CardDAV (server/dav) under /dav/
	// and the RFC 6764 redirects /.well-known/caldav and /.well-known/carddav.
	DAV http.Handler
}

// Handler serves the https endpoints of the current configuration.
type Handler struct {
	cfg  atomic.Pointer[config.Config]
	opts Options
	mux  *http.ServeMux
}

// New returns a handler for cfg; SetConfig replaces it on reload.
func New(cfg *config.Config, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{opts: opts, mux: http.NewServeMux()}
	h.cfg.Store(cfg)
	h.mux.HandleFunc("GET /.well-known/mta-sts.txt", h.mtaSTS)
	h.mux.HandleFunc("GET /mail/config-v1.1.xml", h.autoconfig)
	h.mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", h.autoconfig)
	h.mux.HandleFunc("POST /autodiscover/autodiscover.xml", h.autodiscover)
	h.mux.HandleFunc("POST /Autodiscover/Autodiscover.xml", h.autodiscover)
	h.mux.HandleFunc("GET /healthz", h.healthz)
	if opts.DAV != nil {
		h.mux.Handle("/dav/", opts.DAV)
		h.mux.Handle("/.well-known/caldav", opts.DAV)
		h.mux.Handle("/.well-known/carddav", opts.DAV)
	}
	h.mux.HandleFunc("GET /mail.mobileconfig", h.mobileconfig)
	if opts.Metrics != nil {
		metrics := opts.Metrics.Handler()
		h.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if !fromLoopback(r) {
				http.Error(w, "metrics are served to loopback clients only", http.StatusForbidden)
				return
			}
			metrics.ServeHTTP(w, r)
		})
	}
	return h
}

// SetConfig switches to a new configuration (SIGHUP).
func (h *Handler) SetConfig(cfg *config.Config) { h.cfg.Store(cfg) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// RedirectHandler answers the plain http listener: a permanent redirect to
// the same path over https (port 443 or httpsPort when it is another).
func RedirectHandler(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if host == "" {
			http.Error(w, "missing Host", http.StatusBadRequest)
			return
		}
		if httpsPort != 0 && httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		}
		u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
	})
}

func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// domain returns the served domain named name (case-insensitive).
func findDomain(cfg *config.Config, name string) (config.Domain, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range cfg.Domains {
		if strings.ToLower(d.Name) == name {
			return d, true
		}
	}
	return config.Domain{}, false
}

func (h *Handler) mtaSTS(w http.ResponseWriter, r *http.Request) {
	cfg := h.cfg.Load()
	name, ok := strings.CutPrefix(hostOnly(r.Host), "mta-sts.")
	if !ok {
		http.NotFound(w, r)
		return
	}
	d, ok := findDomain(cfg, name)
	if !ok || d.MTASTSMode == "" {
		http.NotFound(w, r)
		return
	}
	text, _ := MTASTSPolicy(cfg.Hostname, d)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "max-age=300")
	io.WriteString(w, text)
}

// emailDomain picks the domain an autoconfig request is about: the address
// given by the client, else the Host (autoconfig.<domain> or <domain>).
func emailDomain(r *http.Request, address string) string {
	if address != "" {
		if a, err := mail.ParseAddress(address); err == nil {
			address = a.Address
		}
		if i := strings.LastIndexByte(address, '@'); i >= 0 {
			return address[i+1:]
		}
	}
	host := hostOnly(r.Host)
	for _, p := range []string{"autoconfig.", "autodiscover."} {
		if d, ok := strings.CutPrefix(host, p); ok {
			return d
		}
	}
	return host
}

// endpoint is one advertised service.
type endpoint struct {
	port   int
	socket string // "SSL" or "STARTTLS"
}

// endpoints returns the IMAP and submission services a client should use,
// with the public ports of the listen addresses.
func endpoints(cfg *config.Config) (imap, smtp []endpoint) {
	add := func(list *[]endpoint, addr, socket string) {
		if addr == "" {
			return
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(p); err == nil {
			*list = append(*list, endpoint{n, socket})
		}
	}
	add(&imap, cfg.Listen.IMAPS, "SSL")
	add(&imap, cfg.Listen.IMAP, "STARTTLS")
	add(&smtp, cfg.Listen.Submissions, "SSL")
	add(&smtp, cfg.Listen.Submission, "STARTTLS")
	return imap, smtp
}

type acServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Authentication string `xml:"authentication"`
	Username       string `xml:"username"`
}

type acConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID               string     `xml:"id,attr"`
		Domain           string     `xml:"domain"`
		DisplayName      string     `xml:"displayName"`
		DisplayShortName string     `xml:"displayShortName"`
		Incoming         []acServer `xml:"incomingServer"`
		Outgoing         []acServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
	AddressBook *acDAV `xml:"addressBook,omitempty"`
	Calendar    *acDAV `xml:"calendar,omitempty"`
}

func (h *Handler) autoconfig(w http.ResponseWriter, r *http.Request) {
	cfg := h.cfg.Load()
	d, ok := findDomain(cfg, emailDomain(r, r.URL.Query().Get("emailaddress")))
	if !ok {
		http.NotFound(w, r)
		return
	}
	var c acConfig
	c.Version = "1.1"
	c.Provider.ID = d.Name
	c.Provider.Domain = d.Name
	c.Provider.DisplayName = d.Name
	c.Provider.DisplayShortName = d.Name
	imap, smtp := endpoints(cfg)
	for _, e := range imap {
		c.Provider.Incoming = append(c.Provider.Incoming, acServer{"imap", cfg.Hostname, e.port, e.socket, "password-cleartext", "%EMAILADDRESS%"})
	}
	for _, e := range smtp {
		c.Provider.Outgoing = append(c.Provider.Outgoing, acServer{"smtp", cfg.Hostname, e.port, e.socket, "password-cleartext", "%EMAILADDRESS%"})
	}
	if port, ok := h.davEndpoint(cfg); ok {
		c.AddressBook = &acDAV{"carddav", "%EMAILADDRESS%", "http-basic", davURL(cfg.Hostname, port, "/.well-known/carddav")}
		c.Calendar = &acDAV{"caldav", "%EMAILADDRESS%", "http-basic", davURL(cfg.Hostname, port, "/.well-known/caldav")}
	}
	writeXML(w, h.opts.Logger, c)
}

func writeXML(w http.ResponseWriter, logger *slog.Logger, v any) {
	out, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		logger.Error("marshal xml response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	io.WriteString(w, xml.Header)
	w.Write(out)
	io.WriteString(w, "\n")
}

// Outlook autodiscover, "POX" (plain old XML) request and response schemas.
const (
	adResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	adOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

type adRequest struct {
	Request struct {
		EMailAddress string `xml:"EMailAddress"`
	} `xml:"Request"`
}

type adProtocol struct {
	Type         string `xml:"Type"`
	Server       string `xml:"Server"`
	Port         int    `xml:"Port"`
	LoginName    string `xml:"LoginName"`
	SPA          string `xml:"SPA"`
	SSL          string `xml:"SSL"`
	Encryption   string `xml:"Encryption,omitempty"`
	AuthRequired string `xml:"AuthRequired"`
}

type adResponse struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	XMLNS    string   `xml:"xmlns,attr"`
	Response struct {
		XMLNS   string `xml:"xmlns,attr"`
		Account struct {
			AccountType string       `xml:"AccountType"`
			Action      string       `xml:"Action"`
			Protocol    []adProtocol `xml:"Protocol"`
		} `xml:"Account"`
	} `xml:"Response"`
}

func (h *Handler) autodiscover(w http.ResponseWriter, r *http.Request) {
	cfg := h.cfg.Load()
	var req adRequest
	if err := xml.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "malformed autodiscover request", http.StatusBadRequest)
		return
	}
	addr := strings.TrimSpace(req.Request.EMailAddress)
	if _, err := mail.ParseAddress(addr); err != nil {
		http.Error(w, "malformed EMailAddress", http.StatusBadRequest)
		return
	}
	if _, ok := findDomain(cfg, emailDomain(r, addr)); !ok {
		http.NotFound(w, r)
		return
	}
	var resp adResponse
	resp.XMLNS = adResponseNS
	resp.Response.XMLNS = adOutlookNS
	resp.Response.Account.AccountType = "email"
	resp.Response.Account.Action = "settings"
	imap, smtp := endpoints(cfg)
	proto := func(typ string, e endpoint) adProtocol {
		p := adProtocol{Type: typ, Server: cfg.Hostname, Port: e.port, LoginName: addr, SPA: "off", SSL: "on", AuthRequired: "on"}
		if e.socket == "STARTTLS" {
			p.Encryption = "TLS"
		} else {
			p.Encryption = "SSL"
		}
		return p
	}
	// Outlook takes the first protocol of each type: implicit TLS first.
	if len(imap) > 0 {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("IMAP", imap[0]))
	}
	if len(smtp) > 0 {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("SMTP", smtp[0]))
	}
	writeXML(w, h.opts.Logger, resp)
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Health != nil {
		if err := h.opts.Health(); err != nil {
			h.opts.Logger.Warn("health check failed", "err", err)
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}
