package mailfmt

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The Maildirs written here have the Maildir++ layout that Dovecot (its
// default maildir:~/Maildir), Courier and mutt read: INBOX in the root
// (cur, new, tmp), every other folder in a directory of the root named
// "." and the folder's name with its levels separated by "." ("Work/2026"
// is .Work.2026), in modified UTF-7, a "." inside a level written \2e (as
// Dovecot's listescape plugin does). A message is a file of cur named
// "<time>.M<n>P<pid>.mailctl,S=<size>,W=<size with CRLF>:2,<flags>" with
// LF line ends and the internal date as its modification time; the flags
// are the letters D (draft), F (flagged), P (passed: $Forwarded),
// R (replied: \Answered), S (seen), T (trashed: \Deleted) and a to z, the
// keywords numbered in the folder's dovecot-keywords file ($Forwarded is
// both P, for mutt, and a keyword, for Dovecot). The folder's
// dovecot-uidlist keeps the UIDVALIDITY and UIDs, so that an IMAP client
// of a Dovecot serving the export sees the same UIDs; the root's
// subscriptions file lists the subscribed folders.

// maildirLetters maps system flags to Maildir info letters.
var maildirLetters = []struct {
	c    byte
	flag string
}{{'D', FlagDraft}, {'F', FlagFlagged}, {'P', FlagForwarded}, {'R', FlagAnswered}, {'S', FlagSeen}, {'T', FlagDeleted}}

// maxKeywords is the number of keyword letters (a to z).
const maxKeywords = 26

// MaildirFolderDir returns the directory of folder name under the
// Maildir++ root.
func MaildirFolderDir(root, name string) string {
	if strings.EqualFold(name, "INBOX") {
		return root
	}
	return filepath.Join(root, "."+strings.Join(maildirLevels(name), "."))
}

// maildirLevels returns the levels of a folder name as Maildir++ names
// them: modified UTF-7, "." and "\" escaped.
func maildirLevels(name string) []string {
	levels := strings.Split(name, "/")
	for i, l := range levels {
		l = strings.ReplaceAll(l, `\`, `\5c`)
		l = strings.ReplaceAll(l, ".", `\2e`)
		levels[i] = encodeMUTF7(l)
	}
	return levels
}

// folderName is the inverse of MaildirFolderDir for a directory name of
// the root (".Work.2026").
func folderName(dir string) (string, bool) {
	if !strings.HasPrefix(dir, ".") || len(dir) < 2 || dir == ".." {
		return "", false
	}
	levels := strings.Split(dir[1:], ".")
	for i, l := range levels {
		d, ok := decodeMUTF7(l)
		if !ok || d == "" {
			d = l
		}
		levels[i] = unescapeList(d)
	}
	return strings.Join(levels, "/"), true
}

// unescapeList decodes the \XX escapes of a level.
func unescapeList(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MaildirWriter writes a Maildir++ tree.
type MaildirWriter struct {
	root    string
	host    string
	pid     int
	seq     int
	cur     *mdFolder
	folders []*mdFolder
	subs    []string
	// DroppedKeywords counts keywords not written: a folder holds at most
	// 26.
	DroppedKeywords int
}

type mdFolder struct {
	dir                  string
	uidValidity, uidNext uint32
	keywords             []string
	uids                 []string // "uid :base" lines
}

// NewMaildirWriter returns a writer of a Maildir++ tree at root, which
// must not exist or be empty.
func NewMaildirWriter(root string) (*MaildirWriter, error) {
	if ents, err := os.ReadDir(root); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create the Maildir: %w", err)
	}
	return &MaildirWriter{root: root, host: "mailctl", pid: os.Getpid()}, nil
}

// Folder starts the messages of folder name; uidValidity and uidNext (0
// if unknown) go to its dovecot-uidlist.
func (w *MaildirWriter) Folder(name string, uidValidity, uidNext uint32) error {
	dir := MaildirFolderDir(w.root, name)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("create folder %q: %w", name, err)
		}
	}
	if dir != w.root {
		// Maildir++ marks a folder directory with this file.
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			return fmt.Errorf("create folder %q: %w", name, err)
		}
	}
	w.cur = &mdFolder{dir: dir, uidValidity: uidValidity, uidNext: uidNext}
	w.folders = append(w.folders, w.cur)
	return nil
}

// Add writes a message to the current folder; uid (0 if unknown) goes to
// its dovecot-uidlist.
func (w *MaildirWriter) Add(msg Message, uid uint32) error {
	f := w.cur
	if f == nil {
		return errors.New("mailfmt: Add before Folder")
	}
	body := ToLF(msg.Body)
	vsize := len(ToCRLF(body))
	date := msg.Date
	if date.IsZero() {
		date = time.Now()
	}
	w.seq++
	base := fmt.Sprintf("%d.M%dP%dQ%d.%s,S=%d,W=%d", date.Unix(), w.seq, w.pid, w.seq, w.host, len(body), vsize)
	info := w.info(f, msg.Flags)
	tmp := filepath.Join(f.dir, "tmp", base)
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if err := os.Chtimes(tmp, date, date); err != nil {
		return fmt.Errorf("set the message's date: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, "cur", base+":2,"+info)); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if uid != 0 {
		f.uids = append(f.uids, fmt.Sprintf("%d :%s", uid, base))
		if uid >= f.uidNext {
			f.uidNext = uid + 1
		}
	}
	return nil
}

// info returns the flag letters of flags, numbering keywords in f.
func (w *MaildirWriter) info(f *mdFolder, flags []string) string {
	var b []byte
	for _, l := range maildirLetters {
		if HasFlag(flags, l.flag) {
			b = append(b, l.c)
		}
	}
	kws := keywords(flags)
	if HasFlag(flags, FlagForwarded) {
		// Dovecot reads $Forwarded as a keyword, mutt the P letter.
		kws = append(kws, FlagForwarded)
	}
	for _, k := range kws {
		i := slices.Index(f.keywords, k)
		if i < 0 {
			if len(f.keywords) == maxKeywords {
				w.DroppedKeywords++
				continue
			}
			f.keywords = append(f.keywords, k)
			i = len(f.keywords) - 1
		}
		b = append(b, byte('a'+i))
	}
	slices.Sort(b)
	return string(slices.Compact(b))
}

// Subscribe adds folder name to the subscriptions file.
func (w *MaildirWriter) Subscribe(name string) { w.subs = append(w.subs, name) }

// Close writes the folders' dovecot-keywords and dovecot-uidlist files,
// and the subscriptions file (Dovecot's version 2: a header, then one
// folder a line, its levels separated by tabs, named as the directories).
func (w *MaildirWriter) Close() error {
	if len(w.subs) > 0 {
		var b strings.Builder
		b.WriteString("V\t2\n\n")
		for _, name := range w.subs {
			b.WriteString(strings.Join(maildirLevels(name), "\t") + "\n")
		}
		if err := os.WriteFile(filepath.Join(w.root, "subscriptions"), []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("write subscriptions: %w", err)
		}
	}
	for _, f := range w.folders {
		if len(f.keywords) > 0 {
			var b strings.Builder
			for i, k := range f.keywords {
				fmt.Fprintf(&b, "%d %s\n", i, k)
			}
			if err := os.WriteFile(filepath.Join(f.dir, "dovecot-keywords"), []byte(b.String()), 0o600); err != nil {
				return fmt.Errorf("write dovecot-keywords: %w", err)
			}
		}
		if f.uidValidity != 0 {
			next := max(f.uidNext, 1)
			var b strings.Builder
			fmt.Fprintf(&b, "3 V%d N%d\n", f.uidValidity, next)
			for _, l := range f.uids {
				b.WriteString(l + "\n")
			}
			if err := os.WriteFile(filepath.Join(f.dir, "dovecot-uidlist"), []byte(b.String()), 0o600); err != nil {
				return fmt.Errorf("write dovecot-uidlist: %w", err)
			}
		}
	}
	return nil
}

// MaildirFolder is a folder found in a Maildir tree.
type MaildirFolder struct {
	Name string
	Dir  string
}

// IsMaildir reports whether dir is a Maildir (it has cur and new).
func IsMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// MaildirFolders lists the folders of a Maildir++ tree: INBOX (the root)
// first, then the ".Name" folders by name.
func MaildirFolders(root string) ([]MaildirFolder, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read the Maildir: %w", err)
	}
	var out []MaildirFolder
	if IsMaildir(root) {
		out = append(out, MaildirFolder{Name: "INBOX", Dir: root})
	}
	var rest []MaildirFolder
	for _, e := range ents {
		name, ok := folderName(e.Name())
		dir := filepath.Join(root, e.Name())
		if !ok || !e.IsDir() || !IsMaildir(dir) {
			continue
		}
		rest = append(rest, MaildirFolder{Name: name, Dir: dir})
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].Name < rest[j].Name })
	out = append(out, rest...)
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is not a Maildir (no cur and new directories)", root)
	}
	return out, nil
}

// MaildirSubscriptions reads the subscriptions file of a Maildir++ root
// (Dovecot's version 2, or the older one name a line with "." between
// levels); ok is false when there is none.
func MaildirSubscriptions(root string) (subs map[string]bool, ok bool) {
	b, err := os.ReadFile(filepath.Join(root, "subscriptions"))
	if err != nil {
		return nil, false
	}
	lines := strings.Split(string(b), "\n")
	sep := "."
	if len(lines) > 0 && strings.HasPrefix(lines[0], "V\t") {
		lines, sep = lines[1:], "\t"
	}
	subs = map[string]bool{}
	for _, l := range lines {
		if l == "" {
			continue
		}
		if name, ok := folderName("." + strings.ReplaceAll(l, sep, ".")); ok {
			subs[name] = true
		}
	}
	return subs, true
}

// MaildirEntry is a message file of a Maildir folder.
type MaildirEntry struct {
	// Path is the file; Key its unique name (the file name before ":2,").
	Path, Key string
	Flags     []string
	Date      time.Time
}

// ReadMaildir lists the messages of one Maildir folder: in UID order when
// it has a dovecot-uidlist, then the others in delivery order (the time
// that starts their names, then the name).
func ReadMaildir(dir string) ([]MaildirEntry, error) {
	kw := readKeywords(filepath.Join(dir, "dovecot-keywords"))
	uids := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	var out []MaildirEntry
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("read the Maildir folder %s: %w", dir, err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, err
			}
			key, info, _ := strings.Cut(e.Name(), ":")
			ent := MaildirEntry{Path: filepath.Join(dir, sub, e.Name()), Key: key, Date: fi.ModTime()}
			// Dovecot also gives files in new/ their flags.
			if letters, ok := strings.CutPrefix(info, "2,"); ok {
				ent.Flags = parseInfo(letters, kw)
			}
			out = append(out, ent)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ui, oki := uids[out[i].Key]
		uj, okj := uids[out[j].Key]
		if oki != okj {
			return oki
		}
		if oki {
			return ui < uj
		}
		ti, tj := leadingNumber(out[i].Key), leadingNumber(out[j].Key)
		if ti != tj {
			return ti < tj
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// Load reads the message of e (its line ends made CRLF).
func (e MaildirEntry) Load() (Message, error) {
	b, err := os.ReadFile(e.Path)
	if err != nil {
		return Message{}, fmt.Errorf("read message: %w", err)
	}
	return Message{Flags: e.Flags, Date: e.Date, Body: ToCRLF(b), Key: e.Key}, nil
}

func parseInfo(letters string, kw map[int]string) []string {
	var flags []string
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		if c >= 'a' && c <= 'z' {
			if k, ok := kw[int(c-'a')]; ok && !HasFlag(flags, k) {
				flags = append(flags, k)
			}
			continue
		}
		for _, l := range maildirLetters {
			if l.c == c && !HasFlag(flags, l.flag) {
				flags = append(flags, l.flag)
			}
		}
	}
	return flags
}

func readKeywords(path string) map[int]string {
	m := map[int]string{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n, k, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if ok && err == nil && i >= 0 && i < maxKeywords && k != "" {
			m[i] = k
		}
	}
	return m
}

// readUIDList reads the UIDs of a dovecot-uidlist (version 3: a header
// line, then "uid [extensions] :name" lines).
func readUIDList(path string) map[string]uint32 {
	m := map[string]uint32{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			continue
		}
		n, rest, ok := strings.Cut(line, " ")
		uid, err := strconv.ParseUint(n, 10, 32)
		if !ok || err != nil {
			continue
		}
		if i := strings.Index(rest, ":"); i >= 0 {
			m[rest[i+1:]] = uint32(uid)
		}
	}
	return m
}

func leadingNumber(s string) int64 {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, _ := strconv.ParseInt(s[:i], 10, 64)
	return n
}
