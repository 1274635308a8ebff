package web

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"sort"
	"strconv"
	"strings"

	"github.com/mailctl/mailctl/server/config"
)

// davEndpoint returns the public HTTPS port on which CalDAV and CardDAV
// are served, and whether they are (a DAV handler and an https listener).
func (h *Handler) davEndpoint(cfg *config.Config) (int, bool) {
	if h.opts.DAV == nil || cfg.Listen.HTTPS == "" {
		return 0, false
	}
	_, p, err := net.SplitHostPort(cfg.Listen.HTTPS)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return n, err == nil
}

// davURL is the https URL of path on the server, with the port unless 443.
func davURL(host string, port int, path string) string {
	if port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return "https://" + host + path
}

// acDAV is Thunderbird's autoconfig element for an address book or a
// calendar (<addressBook type="carddav">, <calendar type="caldav">).
type acDAV struct {
	Type           string `xml:"type,attr"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
	ServerURL      string `xml:"serverURL"`
}

// The Apple configuration profile (.mobileconfig) is an unsigned XML
// property list. It is written here by hand: the few value types it needs
// (strings, integers, booleans, dictionaries, one array) are some forty
// lines, where a plist library would be a new dependency for one endpoint.

// plistDict is a dictionary; its keys are written sorted.
type plistDict map[string]any

func writePlist(w *strings.Builder, v any, indent string) {
	switch v := v.(type) {
	case string:
		w.WriteString(indent + "<string>")
		escapeText(w, v)
		w.WriteString("</string>\n")
	case int:
		fmt.Fprintf(w, "%s<integer>%d</integer>\n", indent, v)
	case bool:
		fmt.Fprintf(w, "%s<%t/>\n", indent, v)
	case []plistDict:
		w.WriteString(indent + "<array>\n")
		for _, e := range v {
			writePlist(w, e, indent+"\t")
		}
		w.WriteString(indent + "</array>\n")
	case plistDict:
		w.WriteString(indent + "<dict>\n")
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w.WriteString(indent + "\t<key>")
			escapeText(w, k)
			w.WriteString("</key>\n")
			writePlist(w, v[k], indent+"\t")
		}
		w.WriteString(indent + "</dict>\n")
	default:
		panic(fmt.Sprintf("plist: unsupported %T", v))
	}
}

func escapeText(w *strings.Builder, s string) {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	r.WriteString(w, s)
}

// profileUUID is a stable UUID for one payload of one address's profile:
// installing the profile again replaces the earlier one instead of
// adding a second account.
func profileUUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	sum[6] = sum[6]&0x0f | 0x50 // version 5 layout (name-based)
	sum[8] = sum[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// reverseDNS turns example.org into org.example.
func reverseDNS(domain string) string {
	labels := strings.Split(domain, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".")
}

// mobileconfig serves GET /mail.mobileconfig?emailaddress=ADDR: an Apple
// configuration profile with the IMAP and SMTP account of ADDR and, when
// the server serves them, its CalDAV and CardDAV accounts. The password
// is not in it: the device asks for it.
func (h *Handler) mobileconfig(w http.ResponseWriter, r *http.Request) {
	cfg := h.cfg.Load()
	raw := strings.TrimSpace(r.URL.Query().Get("emailaddress"))
	a, err := mail.ParseAddress(raw)
	if raw == "" || err != nil || !strings.Contains(a.Address, "@") {
		http.Error(w, "give the address as ?emailaddress=user@domain", http.StatusBadRequest)
		return
	}
	addr := strings.ToLower(a.Address)
	d, ok := findDomain(cfg, emailDomain(r, addr))
	if !ok {
		http.NotFound(w, r)
		return
	}
	id := reverseDNS(strings.ToLower(d.Name)) + ".mailctl." + strings.NewReplacer("@", ".", "+", "-").Replace(addr)
	payload := func(kind, desc string) plistDict {
		return plistDict{
			"PayloadType":        kind,
			"PayloadIdentifier":  id + "." + kind,
			"PayloadUUID":        profileUUID(addr, kind),
			"PayloadVersion":     1,
			"PayloadDisplayName": desc,
		}
	}
	var content []plistDict
	imap, smtp := endpoints(cfg)
	if len(imap) > 0 && len(smtp) > 0 {
		p := payload("com.apple.mail.managed", "Mail ("+addr+")")
		p["EmailAccountDescription"] = addr
		p["EmailAccountType"] = "EmailTypeIMAP"
		p["EmailAddress"] = addr
		p["IncomingMailServerAuthentication"] = "EmailAuthPassword"
		p["IncomingMailServerHostName"] = cfg.Hostname
		p["IncomingMailServerPortNumber"] = imap[0].port
		p["IncomingMailServerUseSSL"] = true
		p["IncomingMailServerUsername"] = addr
		p["OutgoingMailServerAuthentication"] = "EmailAuthPassword"
		p["OutgoingMailServerHostName"] = cfg.Hostname
		p["OutgoingMailServerPortNumber"] = smtp[0].port
		p["OutgoingMailServerUseSSL"] = true
		p["OutgoingMailServerUsername"] = addr
		p["OutgoingPasswordSameAsIncomingPassword"] = true
		content = append(content, p)
	}
	if port, ok := h.davEndpoint(cfg); ok {
		principal := "/dav/" + addr + "/"
		c := payload("com.apple.caldav.account", "Calendars ("+addr+")")
		c["CalDAVAccountDescription"] = "Calendars (" + addr + ")"
		c["CalDAVHostName"] = cfg.Hostname
		c["CalDAVPort"] = port
		c["CalDAVPrincipalURL"] = davURL(cfg.Hostname, port, principal)
		c["CalDAVUseSSL"] = true
		c["CalDAVUsername"] = addr
		k := payload("com.apple.carddav.account", "Contacts ("+addr+")")
		k["CardDAVAccountDescription"] = "Contacts (" + addr + ")"
		k["CardDAVHostName"] = cfg.Hostname
		k["CardDAVPort"] = port
		k["CardDAVPrincipalURL"] = davURL(cfg.Hostname, port, principal)
		k["CardDAVUseSSL"] = true
		k["CardDAVUsername"] = addr
		content = append(content, c, k)
	}
	profile := plistDict{
		"PayloadContent":           content,
		"PayloadDisplayName":       addr + " at " + d.Name,
		"PayloadDescription":       "Mail, calendars and contacts of " + addr + " on " + cfg.Hostname,
		"PayloadIdentifier":        id,
		"PayloadOrganization":      d.Name,
		"PayloadRemovalDisallowed": false,
		"PayloadType":              "Configuration",
		"PayloadUUID":              profileUUID(addr, "Configuration"),
		"PayloadVersion":           1,
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n")
	writePlist(&b, profile, "")
	b.WriteString("</plist>\n")
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="`+d.Name+`.mobileconfig"`)
	io.WriteString(w, b.String())
}
