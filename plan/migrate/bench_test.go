package migrate_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailctl/mailctl/internal/testenv"
	"github.com/mailctl/mailctl/plan/migrate"
)

// BenchmarkMigrateVsMbsync copies the same Gmail-like Dovecot mailbox
// ($MAILCTL_MIGRATE_MESSAGES messages, default 10 000, plus 5 and 25 MB
// attachments) into a fresh bundled server twice in the same run: with
// migrate.Run and with mbsync (Debian isync, IMAP to IMAP, Starred and
// Important left out as migrate does; mbsync has no label dedupe, so it
// copies All Mail's copies too). It reports messages/s and MB/s of each
// (bytes as stored by the target) and their ratio.
func BenchmarkMigrateVsMbsync(b *testing.B) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		b.Fatalf("mbsync not found (install the Debian package isync): %v", err)
	}
	n := fixtureSize(b)
	d := testenv.StartDovecot(b, testenv.DovecotUser{Name: srcUser, Password: srcPass})
	fx := d.FillGmailLike(b, srcUser, testenv.GmailOptions{Messages: n, Large: []int{5 << 20, largeSize}})
	// Let Dovecot index the source first, so that neither tool pays for it.
	readFolders(b, d.TLSAddr, d.ClientTLS(), srcUser, srcPass)
	ctx := context.Background()
	for b.Loop() {
		tg := startTarget(b, dstUser)
		start := time.Now()
		sum, err := migrate.Run(ctx, []migrate.Job{job(d, tg)}, migrate.Options{State: filepath.Join(b.TempDir(), "s.db")})
		el := time.Since(start)
		if err != nil || !sum.OK() {
			b.Fatalf("Run = %v, %+v", err, sum.Users[0])
		}
		bytes, msgs, _ := tg.st.Usage(ctx, dstUser)
		mRate, mMB := float64(msgs)/el.Seconds(), float64(bytes)/(1<<20)/el.Seconds()

		tg2 := startTarget(b, dstUser)
		el2 := runMbsync(b, mbsync, d, tg2)
		bytes2, msgs2, _ := tg2.st.Usage(ctx, dstUser)
		sRate, sMB := float64(msgs2)/el2.Seconds(), float64(bytes2)/(1<<20)/el2.Seconds()

		b.ReportMetric(mRate, "mailctl_msgs/s")
		b.ReportMetric(mMB, "mailctl_MB/s")
		b.ReportMetric(sRate, "mbsync_msgs/s")
		b.ReportMetric(sMB, "mbsync_MB/s")
		b.ReportMetric(mRate/sRate, "msgs/s_ratio")
		b.Logf("source: %d distinct messages, %.1f MB", len(fx.Messages), float64(fx.Bytes)/(1<<20))
		b.Logf("mailctl migrate: %d messages, %.1f MB in %s: %.0f messages/s, %.1f MB/s", msgs, float64(bytes)/(1<<20), el.Round(time.Millisecond), mRate, mMB)
		b.Logf("mbsync:          %d messages, %.1f MB in %s: %.0f messages/s, %.1f MB/s", msgs2, float64(bytes2)/(1<<20), el2.Round(time.Millisecond), sRate, sMB)
		b.Logf("ratio mailctl/mbsync: %.2f (messages/s), %.2f (MB/s)", mRate/sRate, mMB/sMB)
	}
}

func runMbsync(b *testing.B, bin string, d *testenv.Dovecot, tg *target) time.Duration {
	b.Helper()
	dir := b.TempDir()
	sh, sp, _ := net.SplitHostPort(d.TLSAddr)
	th, tp, _ := net.SplitHostPort(tg.addr)
	conf := fmt.Sprintf(`IMAPAccount src
Host %s
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore src
Account src

IMAPAccount dst
Host %s
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore dst
Account dst

Channel all
Far :src:
Near :dst:
Patterns * !"[Gmail]/Starred" !"[Gmail]/Important" !Archive !Drafts !Junk !Sent !Trash
Create Near
Sync Pull
SyncState %s/
`, sh, sp, srcUser, srcPass, d.CAFile, th, tp, dstUser, dstPass, tg.caFile, dir)
	confFile := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-q", "-c", confFile, "-a")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		b.Fatalf("mbsync: %v\n%s", err, out)
	}
	return el
}
