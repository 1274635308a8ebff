package dav

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-ical"
)

// WriteCalendar writes a calendar as one iCalendar file: every event,
// task and journal entry of its objects in one VCALENDAR, with each time
// zone they use once (the first definition of a TZID wins).
func (s *Store) WriteCalendar(ctx context.Context, user, col string, w io.Writer) error {
	return WriteCalendar(ctx, s, user, col, w)
}

// WriteCalendar is Store.WriteCalendar on any Backend.
func WriteCalendar(ctx context.Context, s Backend, user, col string, w io.Writer) error {
	objs, err := s.Objects(ctx, user, Calendars, col)
	if err != nil {
		return fmt.Errorf("export calendar %s of %s: %w", col, user, err)
	}
	out := ical.NewCalendar()
	out.Props.SetText(ical.PropVersion, "2.0")
	out.Props.SetText(ical.PropProductID, "-//mailctl//calendar export//EN")
	seenTZ := map[string]bool{}
	for _, o := range objs {
		cal, err := ical.NewDecoder(bytes.NewReader(o.Data)).Decode()
		if err != nil {
			return fmt.Errorf("export calendar %s of %s: object %s: %w", col, user, o.Name, err)
		}
		for _, c := range cal.Children {
			if c.Name == ical.CompTimezone {
				id, _ := c.Props.Text(ical.PropTimezoneID)
				if seenTZ[id] {
					continue
				}
				seenTZ[id] = true
			}
			out.Children = append(out.Children, c)
		}
	}
	if len(out.Children) == 0 {
		// An empty VCALENDAR is not valid iCalendar (RFC 5545 3.6): write
		// the properties alone by hand.
		_, err := io.WriteString(w, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailctl//calendar export//EN\r\nEND:VCALENDAR\r\n")
		return err
	}
	if err := ical.NewEncoder(w).Encode(out); err != nil {
		return fmt.Errorf("export calendar %s of %s: %w", col, user, err)
	}
	return nil
}

// WriteAddressBook writes an address book as one vCard file: its cards one
// after the other, as stored.
func (s *Store) WriteAddressBook(ctx context.Context, user, col string, w io.Writer) error {
	return WriteAddressBook(ctx, s, user, col, w)
}

// WriteAddressBook is Store.WriteAddressBook on any Backend.
func WriteAddressBook(ctx context.Context, s Backend, user, col string, w io.Writer) error {
	objs, err := s.Objects(ctx, user, AddressBooks, col)
	if err != nil {
		return fmt.Errorf("export address book %s of %s: %w", col, user, err)
	}
	for _, o := range objs {
		if _, err := w.Write(o.Data); err != nil {
			return err
		}
	}
	return nil
}

// ExportTar writes user's calendars and address books as a tar stream:
// calendars/NAME.ics and contacts/NAME.vcf, one file per collection.
func (s *Store) ExportTar(ctx context.Context, user string, w io.Writer) error {
	return ExportTar(ctx, s, user, w)
}

// ExportTar is Store.ExportTar on any Backend.
func ExportTar(ctx context.Context, s Backend, user string, w io.Writer) error {
	tw := tar.NewWriter(w)
	now := time.Now().UTC().Truncate(time.Second)
	for _, k := range []struct {
		kind  Kind
		ext   string
		write func(context.Context, string, string, io.Writer) error
	}{
		{Calendars, ".ics", func(ctx context.Context, user, col string, w io.Writer) error {
			return WriteCalendar(ctx, s, user, col, w)
		}},
		{AddressBooks, ".vcf", func(ctx context.Context, user, col string, w io.Writer) error {
			return WriteAddressBook(ctx, s, user, col, w)
		}},
	} {
		cols, err := s.Collections(ctx, user, k.kind)
		if err != nil {
			return err
		}
		for _, c := range cols {
			var buf bytes.Buffer
			if err := k.write(ctx, user, c.Name, &buf); err != nil {
				return err
			}
			hdr := &tar.Header{Name: string(k.kind) + "/" + c.Name + k.ext, Mode: 0o600, Size: int64(buf.Len()), ModTime: now, Typeflag: tar.TypeReg}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(buf.Bytes()); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
