package event

import (
	"fmt"
	"time"
)

// The times of events and loss records are written in RFC 3339, in UTC,
// with all nine digits of the nanoseconds: "2026-12-07T07:04:14.100329949Z".
// The text keeps every nanosecond in any language (a JSON number of ns since
// the epoch does not fit a double: JavaScript would round it), its fixed
// width sorts as the time does, and every date library parses it.

// timeLen is the length of AppendTime's text, without quotes.
const timeLen = len("2006-01-02T15:04:05.000000000Z")

// AppendTime appends ns (since the epoch) as a JSON string: AppendTimeText
// in quotes.
func AppendTime(dst []byte, ns int64) []byte {
	dst = append(dst, '"')
	dst = AppendTimeText(dst, ns)
	return append(dst, '"')
}

// AppendTimeText appends ns (since the epoch) as an RFC 3339 UTC time with
// nine fractional digits, as time.Format with
// "2006-01-02T15:04:05.000000000Z07:00" would, without allocating.
func AppendTimeText(dst []byte, ns int64) []byte {
	secs, frac := ns/1e9, ns%1e9
	if frac < 0 {
		secs, frac = secs-1, frac+1e9
	}
	days, sod := secs/86400, secs%86400
	if sod < 0 {
		days, sod = days-1, sod+86400
	}
	y, m, d := civil(days)
	var b [timeLen]byte
	put := func(at int, v int64, width int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	b[4] = '-'
	put(5, m, 2)
	b[7] = '-'
	put(8, d, 2)
	b[10] = 'T'
	put(11, sod/3600, 2)
	b[13] = ':'
	put(14, sod/60%60, 2)
	b[16] = ':'
	put(17, sod%60, 2)
	b[19] = '.'
	put(20, frac, 9)
	b[29] = 'Z'
	return append(dst, b[:]...)
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse).
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

// ParseTime reads an RFC 3339 time (AppendTime's text, without its quotes)
// as ns since the epoch.
func ParseTime(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("time %q: %w", s, err)
	}
	return t.UnixNano(), nil
}
