package migrate

import (
	goimap "github.com/emersion/go-imap/v2"
)

// FolderTarget is where the messages of a source folder (or Gmail label)
// go, as a migration maps it.
type FolderTarget struct {
	Source, Target string
	// AllMail marks Gmail's All Mail: only what no other folder took.
	AllMail bool
}

// MapFolderNames maps source folder names, as an IMAP server without
// special-use attributes lists them (Gmail's "[Gmail]/Sent Mail" ...),
// with hierarchy delimiter delim, to the target's folders the way a
// migration does: the same defaults (INBOX, Sent, Drafts, Trash, Junk,
// All Mail to Archive, Starred and Important left out), folders overriding
// them and exclude adding exclusions. The folders come in processing order
// (INBOX, Sent, Drafts, the others by name, All Mail last), so that a
// message with several labels goes to the first; excluded says why the
// others were left out. `mailctl import` maps the X-Gmail-Labels of a
// Google Takeout mbox with it.
func MapFolderNames(names []string, delim rune, folders map[string]string, exclude []string) (order []FolderTarget, excluded map[string]string) {
	list := make([]*goimap.ListData, 0, len(names))
	for _, n := range names {
		list = append(list, &goimap.ListData{Mailbox: n, Delim: delim})
	}
	fs, excluded := mapFolders(list, '/', &Job{Folders: folders, Exclude: exclude})
	for _, f := range fs {
		order = append(order, FolderTarget{Source: f.Source, Target: f.Target, AllMail: f.AllMail})
	}
	return order, excluded
}

// Gmail's folder names of its system labels, as Google Takeout names the
// labels in X-Gmail-Labels.
var takeoutLabels = map[string]string{
	"Inbox":     "INBOX",
	"Sent":      gmailSent,
	"Drafts":    gmailDrafts,
	"Trash":     gmailTrash,
	"Spam":      gmailSpam,
	"Starred":   gmailStarred,
	"Important": gmailImportant,
	"Archived":  gmailAllMail,
	"Chat":      "[Gmail]/Chats",
}

// TakeoutFolder returns the Gmail IMAP folder of a label of Google
// Takeout's X-Gmail-Labels header, and whether the label is a folder at
// all ("Opened", "Unread" and the "Category ..." tabs are not).
func TakeoutFolder(label string) (string, bool) {
	if f, ok := takeoutLabels[label]; ok {
		return f, true
	}
	switch {
	case label == "Opened" || label == "Unread" || label == "IMAP_Junk" || label == "IMAP_NonJunk":
		return "", false
	case len(label) > 9 && label[:9] == "Category ":
		return "", false
	}
	return label, true
}

// GmailAllMail is the folder that holds every message of a Gmail account
// but those in Spam and Trash.
const GmailAllMail = gmailAllMail

// IsGmailSpamOrTrash reports whether a Gmail folder is Spam or Trash,
// whose messages are not in All Mail.
func IsGmailSpamOrTrash(folder string) bool { return folder == gmailSpam || folder == gmailTrash }
