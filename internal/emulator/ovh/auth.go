package ovh

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rule is an access rule of a consumer key, as granted at
// POST /auth/credential: a method and a path pattern where * matches any
// suffix ("/domain/zone/*").
type Rule struct {
	Method, Path string
}

// Allows reports whether the rule grants method on p.
func (r Rule) Allows(method, p string) bool {
	if r.Method != method {
		return false
	}
	if pre, ok := strings.CutSuffix(r.Path, "*"); ok {
		return strings.HasPrefix(p, pre)
	}
	if ok, _ := path.Match(r.Path, p); ok {
		return true
	}
	return r.Path == p
}

// AllRules grants every method on every path.
var AllRules = []Rule{{"GET", "/*"}, {"POST", "/*"}, {"PUT", "/*"}, {"DELETE", "/*"}}

// ReadOnlyRules grants GET only.
var ReadOnlyRules = []Rule{{"GET", "/*"}}

// Auth checks OVH request signatures (X-Ovh-Application, X-Ovh-Consumer,
// X-Ovh-Timestamp, X-Ovh-Signature) against registered applications and
// consumer keys, as the OVH API does. It is shared by every OVH emulator
// endpoint (domain zones, IP reverse) and safe for concurrent use.
type Auth struct {
	// Skew is the accepted difference between X-Ovh-Timestamp and the
	// server time (default 300s).
	Skew time.Duration
	// Now is the server clock (default time.Now).
	Now func() time.Time

	mu   sync.Mutex
	apps map[string]string  // application key -> secret
	cks  map[string]*credCK // consumer key -> grant
}

type credCK struct {
	app   string
	rules []Rule
}

// AddApplication registers an application key and its secret.
func (a *Auth) AddApplication(key, secret string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.apps == nil {
		a.apps = map[string]string{}
	}
	a.apps[key] = secret
}

// AddConsumer registers a validated consumer key for application key with
// its access rules.
func (a *Auth) AddConsumer(appKey, consumerKey string, rules []Rule) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cks == nil {
		a.cks = map[string]*credCK{}
	}
	a.cks[consumerKey] = &credCK{app: appKey, rules: rules}
}

// RemoveConsumer revokes a consumer key.
func (a *Auth) RemoveConsumer(consumerKey string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cks, consumerKey)
}

// Signature computes the OVH signature of a call: "$1$" + hex(sha1(secret +
// "+" + consumerKey + "+" + method + "+" + full URL + "+" + body + "+" +
// timestamp)).
func Signature(appSecret, consumerKey, method, url string, body []byte, timestamp string) string {
	h := sha1.New()
	io.WriteString(h, appSecret+"+"+consumerKey+"+"+method+"+"+url+"+")
	h.Write(body)
	io.WriteString(h, "+"+timestamp)
	return "$1$" + hex.EncodeToString(h.Sum(nil))
}

// Error is an OVH API error answer.
type Error struct {
	Status    int    `json:"-"`
	ErrorCode string `json:"errorCode,omitempty"`
	HTTPCode  string `json:"httpCode,omitempty"`
	Class     string `json:"class,omitempty"`
	Message   string `json:"message"`
}

// Write sends the error as OVH does.
func (e *Error) Write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Ovh-Queryid", "EU.emulator."+strconv.FormatInt(time.Now().UnixNano(), 36))
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}

func authErr(status int, code, msg string) *Error {
	return &Error{Status: status, ErrorCode: code, HTTPCode: strconv.Itoa(status) + " " + http.StatusText(status), Message: msg}
}

// Verify checks a signed request whose body has been read into body. base is
// the URL prefix the client used (scheme and host); apiPath is the path
// relative to the API version root, for access rules. It returns nil when
// the call is allowed.
func (a *Auth) Verify(r *http.Request, body []byte, apiPath string) *Error {
	ak := r.Header.Get("X-Ovh-Application")
	if ak == "" {
		return authErr(http.StatusUnauthorized, "", "You must login first")
	}
	a.mu.Lock()
	secret, appOK := a.apps[ak]
	ck := r.Header.Get("X-Ovh-Consumer")
	grant := a.cks[ck]
	skew, now := a.Skew, a.Now
	a.mu.Unlock()
	if skew == 0 {
		skew = 300 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	if !appOK {
		return authErr(http.StatusForbidden, "INVALID_KEY", "This application key is invalid")
	}
	if ck == "" || grant == nil || grant.app != ak {
		return authErr(http.StatusForbidden, "INVALID_CREDENTIAL", "This credential does not exist")
	}
	ts := r.Header.Get("X-Ovh-Timestamp")
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return authErr(http.StatusBadRequest, "INVALID_SIGNATURE", "Invalid signature")
	}
	if d := now().Sub(time.Unix(t, 0)); d > skew || d < -skew {
		return authErr(http.StatusBadRequest, "QUERY_TIME_OUT", "Query out of time")
	}
	url := "http://" + r.Host + r.URL.RequestURI()
	if r.TLS != nil {
		url = "https://" + r.Host + r.URL.RequestURI()
	}
	if want := Signature(secret, ck, r.Method, url, body, ts); r.Header.Get("X-Ovh-Signature") != want {
		return authErr(http.StatusBadRequest, "INVALID_SIGNATURE", "Invalid signature")
	}
	for _, rule := range grant.rules {
		if rule.Allows(r.Method, apiPath) {
			return nil
		}
	}
	return authErr(http.StatusForbidden, "NOT_GRANTED_CALL", "This call has not been granted")
}

// readBody reads and restores the request body.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
