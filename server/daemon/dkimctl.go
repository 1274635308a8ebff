package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/server/dkim"
)

// The DKIM rotation endpoints of the control socket: POST
// /dkim/{rotate,activate,remove}?domain=D&selector=BASE. The daemon runs
// them (not the command that asks) so that the key files and the rotation
// state stay owned by the server's user, and so that the signer takes the
// new keys at once.

// dkimAction runs one rotation step for a domain of the running
// configuration and reloads the signing keys.
func (d *daemon) dkimAction(ctx context.Context, action, domain, selector string) error {
	d.dkimMu.Lock()
	defer d.dkimMu.Unlock()
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	domain = strings.ToLower(domain)
	var bases []string
	found := false
	for _, dm := range cfg.Domains {
		if strings.EqualFold(dm.Name, domain) {
			bases, found = dm.DKIMSelectors, true
		}
	}
	if !found {
		return fmt.Errorf("dkim %s: %s is not a domain of this server", action, domain)
	}
	dir := contract.DKIMKeyDir(cfg.WithDefaults().DataDir)
	now := time.Now()
	var err error
	switch action {
	case "rotate":
		err = dkim.Rotate(dir, domain, bases, selector, now)
	case "activate":
		err = dkim.Activate(dir, domain, bases, selector, now)
	case "remove":
		err = dkim.Remove(dir, domain, bases, selector, now)
	default:
		return fmt.Errorf("dkim: unknown action %q (rotate, activate, remove)", action)
	}
	if err != nil {
		return err
	}
	keys, err := dkim.KeysFromConfig(cfg)
	if err != nil {
		return fmt.Errorf("dkim %s: reload keys: %w", action, err)
	}
	d.signer.SetKeys(keys)
	d.mu.Lock()
	d.keys = keys
	d.mu.Unlock()
	d.log.Info("dkim rotation step", "action", action, "domain", domain, "selector", selector)
	return nil
}

// handleDKIM adds the rotation endpoints to the control socket's mux.
func handleDKIM(mux *http.ServeMux, run func(ctx context.Context, action, domain, selector string) error) {
	mux.HandleFunc("POST /dkim/{action}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := run(r.Context(), r.PathValue("action"), q.Get("domain"), q.Get("selector")); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// DKIMAction asks the server behind the control socket at path to run a
// rotation step: "rotate" (generate the pending selector), "activate"
// (switch signing to it) or "remove" (delete a retired selector's keys).
func DKIMAction(ctx context.Context, path, action, domain, selector string) error {
	c := controlClient(path)
	defer c.CloseIdleConnections()
	u := "http://mailctl/dkim/" + url.PathEscape(action) + "?" + url.Values{"domain": {domain}, "selector": {selector}}.Encode()
	req, err := http.NewRequestWithContext(ctx, "POST", u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("query control socket %q (is the server running?): %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	return nil
}
