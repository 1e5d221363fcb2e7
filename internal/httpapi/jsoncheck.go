package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/connreg/registry/domain"
)

// validEncoding reports whether body is valid UTF-8 and every \u escape in
// it encodes a character: encoding/json replaces invalid bytes and unpaired
// surrogate escapes with U+FFFD without a word, which would store (or seal,
// for a password) another value than the one sent.
func validEncoding(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	// Backslashes occur only inside strings of valid JSON (json.Valid has
	// run), so every one starts an escape.
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		i++
		if i >= len(body) || body[i] != 'u' {
			continue
		}
		r, ok := hex4(body, i+1)
		if !ok {
			return false
		}
		i += 4
		switch {
		case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
			if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return false
			}
			low, ok := hex4(body, i+3)
			if !ok || utf16.DecodeRune(r, low) == utf8.RuneError {
				return false
			}
			i += 6
		case utf16.IsSurrogate(r): // a low surrogate alone
			return false
		}
	}
	return true
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	return rune(n), err == nil
}

// checkDuplicateKeys records, under its path, every member name that occurs
// twice in one object, at any depth: encoding/json keeps the last one
// silently, so {"host":"a","host":"b"} would not mean what a reviewer of the
// request reads. Names are compared after unescaping ("a" and "\u0061" are
// the same name). body must be valid JSON.
func checkDuplicateKeys(body []byte, viol *domain.ValidationError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var walk func(path string) bool
	walk = func(path string) bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return true
		}
		if d == '[' {
			for i := 0; dec.More(); i++ {
				if !walk(path + "[" + strconv.Itoa(i) + "]") {
					return false
				}
			}
		} else {
			seen := map[string]bool{}
			for dec.More() {
				tok, err := dec.Token()
				name, ok := tok.(string)
				if err != nil || !ok {
					return false
				}
				p := fieldPath(path, name)
				if seen[name] {
					viol.Add(p, domain.ViolationBadValue, "is given more than once")
				}
				seen[name] = true
				if !walk(p) {
					return false
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err == nil
	}
	walk("")
}

// fieldPath joins a member name to its parent's path, the name truncated
// and, when it is not safe text, escaped.
func fieldPath(parent, name string) string {
	name = domain.Printable(truncate(name, 100))
	if parent == "" {
		return name
	}
	return parent + "." + name
}
