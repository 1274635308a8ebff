package migrate

import (
	"path"
	"sort"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
)

// Gmail's folder names, matched when the source does not announce
// special-use attributes (RFC 6154).
const (
	gmailAllMail   = "[Gmail]/All Mail"
	gmailSent      = "[Gmail]/Sent Mail"
	gmailDrafts    = "[Gmail]/Drafts"
	gmailTrash     = "[Gmail]/Trash"
	gmailSpam      = "[Gmail]/Spam"
	gmailStarred   = "[Gmail]/Starred"
	gmailImportant = "[Gmail]/Important"
	// Google Mail's name in some countries (Germany, UK before 2012).
	googleMailPrefix = "[Google Mail]/"
)

// DefaultExclude are the source folders skipped unless the folder mapping
// names them: their messages are in other folders too (Starred messages
// carry \Flagged wherever they are).
var DefaultExclude = []string{gmailImportant, gmailStarred}

// Target folder names of the special uses (those of the bundled server).
const (
	TargetSent    = "Sent"
	TargetDrafts  = "Drafts"
	TargetTrash   = "Trash"
	TargetJunk    = "Junk"
	TargetArchive = "Archive"
)

// folder is one source folder to process.
type folder struct {
	Source  string
	Target  string
	AllMail bool // processed last, only messages imported from nowhere else
	rank    int
}

// mapFolders turns the source LIST into the folders to process, in
// processing order: INBOX, Sent, Drafts, the other folders by name, All
// Mail. excluded lists the source folders left out (with the reason).
func mapFolders(list []*goimap.ListData, targetDelim rune, job *Job) (folders []folder, excluded map[string]string) {
	excluded = map[string]string{}
	for _, l := range list {
		name := l.Mailbox
		if hasAttr(l.Attrs, goimap.MailboxAttrNoSelect) || hasAttr(l.Attrs, goimap.MailboxAttrNonExistent) {
			continue
		}
		norm := strings.Replace(name, googleMailPrefix, "[Gmail]/", 1)
		if l.Delim != 0 && l.Delim != '/' {
			norm = strings.ReplaceAll(norm, string(l.Delim), "/")
		}
		f := folder{Source: name, rank: 3}
		target, override := overrideFor(job.Folders, name, l.Delim)
		switch {
		case override:
			f.Target = target
		case (norm == gmailStarred || norm == gmailImportant ||
			hasAttr(l.Attrs, goimap.MailboxAttrFlagged) || hasAttr(l.Attrs, goimap.MailboxAttrImportant)):
			// Before the patterns: the configuration's default exclude
			// lists these too, and this says why.
			excluded[name] = "excluded by default (its messages are in other folders)"
			continue
		case excludedBy(job.Exclude, name, l.Delim) != "":
			excluded[name] = "excluded by " + excludedBy(job.Exclude, name, l.Delim)
			continue
		case strings.EqualFold(name, "INBOX"):
			f.Target, f.rank = "INBOX", 0
		case hasAttr(l.Attrs, goimap.MailboxAttrSent) || norm == gmailSent:
			f.Target, f.rank = TargetSent, 1
		case hasAttr(l.Attrs, goimap.MailboxAttrDrafts) || norm == gmailDrafts:
			f.Target, f.rank = TargetDrafts, 2
		case hasAttr(l.Attrs, goimap.MailboxAttrTrash) || norm == gmailTrash:
			f.Target = TargetTrash
		case hasAttr(l.Attrs, goimap.MailboxAttrJunk) || norm == gmailSpam:
			f.Target = TargetJunk
		case hasAttr(l.Attrs, goimap.MailboxAttrAll) || norm == gmailAllMail:
			f.Target, f.AllMail, f.rank = TargetArchive, true, 4
		default:
			f.Target = convertDelim(name, l.Delim, targetDelim)
		}
		if override && (hasAttr(l.Attrs, goimap.MailboxAttrAll) || norm == gmailAllMail) {
			f.AllMail, f.rank = true, 4
		}
		folders = append(folders, f)
	}
	sort.SliceStable(folders, func(i, j int) bool {
		if folders[i].rank != folders[j].rank {
			return folders[i].rank < folders[j].rank
		}
		return folders[i].Source < folders[j].Source
	})
	return folders, excluded
}

// overrideFor finds the user's mapping of name: an exact entry, or the
// entry of its nearest parent (the subtree follows it).
func overrideFor(m map[string]string, name string, delim rune) (string, bool) {
	if t, ok := m[name]; ok {
		return t, true
	}
	if delim == 0 {
		return "", false
	}
	d := string(delim)
	for p := name; strings.Contains(p, d); {
		p = p[:strings.LastIndex(p, d)]
		if t, ok := m[p]; ok {
			return t + "/" + strings.ReplaceAll(name[len(p)+1:], d, "/"), true
		}
	}
	return "", false
}

// excludedBy returns the exclusion pattern matching name: an exact name,
// "X/*" for X and its subtree, or a path.Match glob.
func excludedBy(patterns []string, name string, delim rune) string {
	for _, p := range patterns {
		if p == name {
			return p
		}
		if base, ok := strings.CutSuffix(p, "/*"); ok {
			if name == base || strings.HasPrefix(name, base+"/") || (delim != 0 && strings.HasPrefix(name, base+string(delim))) {
				return p
			}
		}
		if ok, _ := path.Match(p, name); ok {
			return p
		}
	}
	return ""
}

// convertDelim rewrites a hierarchical name for the target's delimiter; a
// target delimiter inside a source component becomes "_".
func convertDelim(name string, from, to rune) string {
	if from == to || to == 0 {
		return name
	}
	var parts []string
	if from == 0 {
		parts = []string{name}
	} else {
		parts = strings.Split(name, string(from))
	}
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, string(to), "_")
	}
	return strings.Join(parts, string(to))
}

func hasAttr(attrs []goimap.MailboxAttr, a goimap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}
