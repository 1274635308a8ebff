package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailctl/mailctl/contract"
	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/config"
	"github.com/mailctl/mailctl/plan/desired"
	"github.com/mailctl/mailctl/plan/target"
	"github.com/mailctl/mailctl/server/dkim"
	"github.com/mailctl/mailctl/server/pgstore"
)

// nodesLabHCL is two local servers (the lab's, on 127.0.0.2 and
// 127.0.0.3) of one domain on one PostgreSQL store.
const nodesLabHCL = `
provider "zonefile" "lab" { dir = ".mailctl/zones" }
server "a" {
  hostname = "a.example.test"
  ipv4     = "127.0.0.2"
  local { dir = ".a" }
  ports {
    smtp = 3525
    submission = 3587
    submissions = 3465
    imap = 3143
    imaps = 3993
    https = 3443
    http = 0
  }
  tls { self_signed = true }
  store { postgres = env("PG_URL") }
}
server "b" {
  hostname = "b.example.test"
  ipv4     = "127.0.0.3"
  local { dir = ".b" }
  ports {
    smtp = 3525
    submission = 3587
    submissions = 3465
    imap = 3143
    imaps = 3993
    https = 3443
    http = 0
  }
  tls { self_signed = true }
  store { postgres = env("PG_URL") }
}
domain "example.test" {
  dns     = provider.zonefile.lab
  servers = [server.a, server.b]
}
user "alice@example.test" {
  password_hash = "$argon2id$v=19$m=65536,t=3,p=2$UeSV5v4pRDM98iMYybgzlw$uJxSGKfVS7hCRQQqAKRIqHwmZPaZMYJKdD0YoceRU1I"
  aliases       = ["postmaster@example.test", "abuse@example.test"]
}
`

// storeAvailable lets the configuration name a PostgreSQL store for one
// (sequential) test, before `mailctl serve` runs on it.
func storeAvailable(t *testing.T) {
	prev := config.PostgresStoreAvailable
	config.PostgresStoreAvailable = func() bool { return true }
	t.Cleanup(func() { config.PostgresStoreAvailable = prev })
}

// TestNodesLabPlan: the plan of two local nodes on one store creates both
// servers, publishes an MX and host record for each, says the store's
// schema is unknown until apply migrates it, and never shows the store's
// URL, on the terminal or in the saved plan.
func TestNodesLabPlan(t *testing.T) {
	storeAvailable(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), nodesLabHCL, 0o644)
	const url = "postgres://mailctl:pl4n-secret@127.0.0.1:1/mail"
	e, out, errb := testEnv(dir)
	e.Getenv = func(n string) string { return map[string]string{"PG_URL": url}[n] }
	planFile := filepath.Join(dir, "nodes.plan")
	if code := runCLI(t, e, "plan", "-detailed-exitcode", "-out", planFile); code != 2 {
		t.Fatalf("plan = %d, want 2\n%s\n%s", code, out, errb)
	}
	text := out.String()
	if n := strings.Count(text, "# user.alice@example.test will be created"); n != 1 {
		t.Errorf("the user shared by both servers is planned %d times, want once", n)
	}
	for _, want := range []string{
		"# server.a will be created", "# server.b will be created", "+ 10 a.example.test.\n", "+ 10 b.example.test.\n",
		"+ 127.0.0.2\n", "+ 127.0.0.3\n", "# user.alice@example.test will be created\n  + user.alice@example.test\n        # mailbox on server.a\n        # mailbox on server.b\n",
		fmt.Sprintf("store schema unknown -> %d (not deployed yet", pgstore.SchemaVersion()),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan lacks %q:\n%s", want, text)
		}
	}
	saved, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"plan output": text + errb.String(), "saved plan": string(saved)} {
		if strings.Contains(s, "pl4n-secret") || strings.Contains(s, "127.0.0.1:1/mail") {
			t.Errorf("the %s holds the store's URL:\n%s", what, s)
		}
	}
}

// TestNodesLabPrepare: what apply does on two local nodes before it
// deploys them, on a PostgreSQL from internal/testenv: the URL file
// (0600), the schema created by the staged release (not made current)
// and a second migration that changes nothing, the first node's DKIM
// keys copied to the second, and a database at a newer schema refused
// with one line.
func TestNodesLabPrepare(t *testing.T) {
	storeAvailable(t)
	bin := buildBinary(t)
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), nodesLabHCL, 0o644)
	cfg, diags := config.Load(dir, config.LoadOptions{Getenv: func(n string) string { return map[string]string{"PG_URL": url}[n] }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	b, err := target.LoadBinary(version, bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conns := map[string]*target.Conn{}
	for _, s := range cfg.Servers {
		c, err := target.Open(ctx, cfg, s, target.Options{})
		if err != nil {
			t.Fatal(err)
		}
		conns[s.Name] = c
		if changed, err := c.WriteStoreURL(ctx, url); err != nil || !changed {
			t.Fatalf("WriteStoreURL(%s) = %v, %v", s.Name, changed, err)
		}
		f := desired.StoreURLFile(cfg, s)
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("URL file of %s: %v, %v; want mode 0600", s.Name, fi, err)
		}
		if changed, err := c.WriteStoreURL(ctx, url); err != nil || changed {
			t.Errorf("second WriteStoreURL(%s) = %v, %v; want unchanged", s.Name, changed, err)
		}
	}
	want := fmt.Sprintf("store schema 0 -> %d", pgstore.SchemaVersion())
	if out, err := conns["a"].MigrateStore(ctx, b); err != nil || out != want {
		t.Fatalf("MigrateStore(a) = %q, %v; want %q", out, err, want)
	}
	if out, err := conns["b"].MigrateStore(ctx, b); err != nil || !strings.HasSuffix(out, "up to date") {
		t.Fatalf("MigrateStore(b) = %q, %v; want up to date", out, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".a", "current")); err == nil {
		t.Errorf("the staged release became current before the deployment")
	}

	// DKIM: a's keys (as its server makes them on first start) reach b.
	keyDir := contract.DKIMKeyDir(desired.LabDataDir(cfg, cfg.Servers[0]))
	if _, err := dkim.Ensure(keyDir, "example.test", []string{"mailctl"}); err != nil {
		t.Fatal(err)
	}
	files, err := conns["a"].DKIMFiles(ctx, "example.test")
	if err != nil || len(files) != 2 {
		t.Fatalf("DKIMFiles(a) = %d files, %v; want 2", len(files), err)
	}
	if changed, err := conns["b"].SyncDKIMFiles(ctx, "example.test", files); err != nil || !changed {
		t.Fatalf("SyncDKIMFiles(b) = %v, %v", changed, err)
	}
	bDir := filepath.Join(contract.DKIMKeyDir(desired.LabDataDir(cfg, cfg.Servers[1])), "example.test")
	for n, content := range files {
		got, err := os.ReadFile(filepath.Join(bDir, n))
		fi, _ := os.Stat(filepath.Join(bDir, n))
		if err != nil || string(got) != string(content) || fi.Mode().Perm() != 0o600 {
			t.Errorf("b's copy of %s: %v, mode %v", n, err, fi.Mode())
		}
	}
	if changed, err := conns["b"].SyncDKIMFiles(ctx, "example.test", files); err != nil || changed {
		t.Errorf("second SyncDKIMFiles(b) = %v, %v; want unchanged", changed, err)
	}

	// A newer mailctl migrated the database.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	newer := pgstore.SchemaVersion() + 1
	if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'future.sql')", newer); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	_, err = conns["a"].MigrateStore(ctx, b)
	if err == nil || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), fmt.Sprintf("server.a: pgstore: database schema is newer than this mailctl: the database is at schema %d", newer)) {
		t.Errorf("MigrateStore of a newer schema = %v, want pgstore's one line", err)
	}
}

// TestContactedServers: a plan targeted at a server also reads the other
// servers of its domains, between which apply copies DKIM keys.
func TestContactedServers(t *testing.T) {
	a, b, c := &config.Server{Name: "a"}, &config.Server{Name: "b"}, &config.Server{Name: "c"}
	cfg := &config.Config{Servers: []*config.Server{a, b, c},
		Domains: []*config.Domain{{Name: "example.org", Server: a, Servers: []*config.Server{a, b}}, {Name: "example.net", Server: c, Servers: []*config.Server{c}}}}
	for _, target := range []string{"server.a", "server.b"} {
		if got := contactedServers(cfg, []string{target}); !got["a"] || !got["b"] || got["c"] || len(got) != 2 {
			t.Errorf("contactedServers(%s) = %v, want a and b", target, got)
		}
	}
	if got := contactedServers(cfg, []string{"dns.example.org.MX"}); len(got) != 0 {
		t.Errorf("contactedServers(a DNS target) = %v, want none", got)
	}
}

// TestNodesLabApply applies two local nodes on one PostgreSQL store: the
// first apply creates the schema and starts both servers with the same
// DKIM keys; mail taken by one node is read through the other; a second
// apply changes nothing; a database at a newer schema than this mailctl
// stops the next apply with one line.
func TestNodesLabApply(t *testing.T) {
	if !config.PostgresStoreAvailable() {
		t.Skip("mailctl serve does not run on PostgreSQL in this build yet (server/config postgresWired)")
	}
	for _, addr := range []string{"127.0.0.2:3525", "127.0.0.3:3525"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s is taken: is a node lab already running?", addr)
		}
	}
	bin := buildBinary(t)
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mail.hcl"), nodesLabHCL, 0o644)
	run := func(args ...string) (string, int) {
		t.Helper()
		return mailctlEnv(t, bin, []string{"PG_URL=" + url}, append([]string{"-chdir", dir}, args...)...)
	}
	t.Cleanup(func() { run("destroy", "-auto-approve") })

	out, code := run("apply", "-auto-approve")
	if code != 0 || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("apply = %d:\n%s", code, out)
	}
	if want := fmt.Sprintf("server.a: store schema 0 -> %d", pgstore.SchemaVersion()); !strings.Contains(out, want) || strings.Count(out, "migrating the store's schema") != 1 {
		t.Errorf("apply output lacks %q, once:\n%s", want, out)
	}
	if strings.Contains(out, url) {
		t.Errorf("apply printed the store's URL:\n%s", out)
	}
	for _, f := range []string{"mailctl-ed25519.pem", "mailctl-rsa.pem"} {
		ka, errA := os.ReadFile(filepath.Join(dir, ".a", "data", "dkim", "example.test", f))
		kb, errB := os.ReadFile(filepath.Join(dir, ".b", "data", "dkim", "example.test", f))
		if errA != nil || errB != nil || string(ka) != string(kb) {
			t.Errorf("DKIM key %s of a and b: %v, %v, same %v", f, errA, errB, string(ka) == string(kb))
		}
	}

	// In through b, out through a: one store.
	token := "nodes-" + time.Now().Format("150405.000000")
	swaks := exec.Command("swaks", "--server", "127.0.0.3:3525", "--from", "someone@example.net",
		"--to", "alice@example.test", "--header", "Subject: "+token, "--body", "hello nodes")
	if b, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, b)
	}
	py := `
import imaplib, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
m = imaplib.IMAP4_SSL("127.0.0.2", 3993, ssl_context=ctx)
m.login("alice@example.test", "lab-alice-password")
for _ in range(50):
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", sys.argv[2])
    if data[0].split():
        break
    time.sleep(0.2)
print("found", len(data[0].split()))
`
	imap := exec.Command("python3", "-c", py, filepath.Join(dir, ".a", "data", "tls", "self-signed.crt"), token)
	if b, err := imap.CombinedOutput(); err != nil || !strings.Contains(string(b), "found 1") {
		t.Errorf("IMAP read through a of the message given to b: %v\n%s", err, b)
	}

	if out, code := run("apply", "-auto-approve"); code != 0 || !strings.Contains(out, "No changes.") {
		t.Errorf("second apply = %d, want no changes:\n%s", code, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	newer := pgstore.SchemaVersion() + 1
	if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'future.sql')", newer); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// A change, so that apply deploys (and migrates) again.
	writeFile(t, filepath.Join(dir, "mail.hcl"), strings.Replace(nodesLabHCL, "https = 3443", "https = 3444", 2), 0o644)
	out, code = run("apply", "-auto-approve")
	if code == 0 || !strings.Contains(out, fmt.Sprintf("the database is at schema %d", newer)) {
		t.Errorf("apply on a newer schema = %d, want refused:\n%s", code, out)
	}

	// Destroy stops both and leaves no copy of the URL behind.
	if out, code := run("destroy", "-auto-approve"); code != 0 || !strings.Contains(out, "Destroy complete!") {
		t.Fatalf("destroy = %d:\n%s", code, out)
	}
	for _, n := range []string{".a", ".b"} {
		if _, err := os.Stat(filepath.Join(dir, n, "postgres-url")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s/postgres-url after destroy: %v, want removed", n, err)
		}
	}
}

// mailctlEnv is mailctl with more environment variables.
func mailctlEnv(t *testing.T, bin string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mailctl %v: %v", args, err)
	}
	return out.String(), code
}
