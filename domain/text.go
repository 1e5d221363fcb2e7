package domain

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Reasons a text value is refused, shared by every field that checks text.
var (
	errNotUTF8      = errors.New("must be valid UTF-8")
	errControlChar  = errors.New("must not contain control characters (NUL, escape sequences, CR, LF, tabs)")
	errBidiOverride = errors.New("must not contain Unicode bidirectional override characters")
)

// checkText refuses text that would change what a terminal, a log viewer or
// a code review shows: invalid UTF-8 (a decoder would replace it silently),
// C0 and C1 control characters (NUL, ANSI escapes, CR and LF forge log lines
// and cut C strings) and the bidi overrides and isolates U+202A-U+202E and
// U+2066-U+2069 (they reorder what a reader sees, "Trojan Source").
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errNotUTF8
	}
	for _, r := range s {
		switch {
		case r < 0x20, r >= 0x7f && r <= 0x9f:
			return errControlChar
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return errBidiOverride
		}
	}
	return nil
}

// Printable renders s for a field path or a message: unchanged when it is
// safe text, quoted with Go escapes (\x00, \u202e) otherwise, so that a
// refusal names what was sent without carrying it.
func Printable(s string) string {
	if checkText(s) == nil {
		return s
	}
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}
