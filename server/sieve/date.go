package sieve

import (
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// parseZone reads a :zone argument, "+hhmm" or "-hhmm" (RFC 5260 4.1).
func parseZone(s string) (*time.Location, error) {
	if len(s) != 5 || (s[0] != '+' && s[0] != '-') {
		return nil, fmt.Errorf("zone %q is not +hhmm or -hhmm", s)
	}
	h, err1 := strconv.Atoi(s[1:3])
	m, err2 := strconv.Atoi(s[3:5])
	if err1 != nil || err2 != nil || h > 23 || m > 59 {
		return nil, fmt.Errorf("zone %q is not +hhmm or -hhmm", s)
	}
	off := h*3600 + m*60
	if s[0] == '-' {
		off = -off
	}
	return time.FixedZone(s, off), nil
}

func (r *runner) date(t tDate) (bool, error) {
	var times []time.Time
	if t.current {
		times = []time.Time{r.opt.Now}
	} else {
		for _, v := range r.msg.values(r.expand(t.header)) {
			if t.header == "received" {
				// RFC 5260 4: the date of a Received field follows its
				// last ";".
				if i := strings.LastIndexByte(v, ';'); i >= 0 {
					v = v[i+1:]
				}
			}
			d, err := mail.ParseDate(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			times = append(times, d)
		}
	}
	var vals []string
	for _, d := range times {
		switch {
		case t.zone != nil:
			d = d.In(t.zone)
		case t.orig && !t.current:
		default:
			d = d.In(r.opt.Now.Location())
		}
		vals = append(vals, datePart(d, t.part))
	}
	return r.match(t.m, vals, t.keys)
}

func datePart(d time.Time, part string) string {
	switch part {
	case "year":
		return fmt.Sprintf("%04d", d.Year())
	case "month":
		return fmt.Sprintf("%02d", int(d.Month()))
	case "day":
		return fmt.Sprintf("%02d", d.Day())
	case "date":
		return d.Format("2006-01-02")
	case "julian":
		// Modified Julian Day: days since 1858-11-17.
		y, m, dd := d.Date()
		day := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
		epoch := time.Date(1858, 11, 17, 0, 0, 0, 0, time.UTC)
		return strconv.Itoa(int(day.Sub(epoch).Hours() / 24))
	case "hour":
		return fmt.Sprintf("%02d", d.Hour())
	case "minute":
		return fmt.Sprintf("%02d", d.Minute())
	case "second":
		return fmt.Sprintf("%02d", d.Second())
	case "time":
		return d.Format("15:04:05")
	case "iso8601":
		return d.Format("2006-01-02T15:04:05-07:00")
	case "std11":
		return d.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	case "zone":
		return d.Format("-0700")
	case "weekday":
		return strconv.Itoa(int(d.Weekday()))
	}
	return ""
}
