package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// keyIndex maps dotted keys to the line that defines them, for error messages only (the
// TOML library reports no positions for keys it has decoded). Elements of arrays of tables
// are recorded both with their index ("a.b[1].c") and without it (first occurrence).
type keyIndex map[string]int

// find returns the line of key, or of its nearest enclosing key or table, or 0.
func (ix keyIndex) find(key string) int {
	for key != "" {
		if l, ok := ix[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func (ix keyIndex) add(key string, line int) {
	if _, ok := ix[key]; !ok {
		ix[key] = line
	}
}

// keyLines scans TOML text line by line. It understands table headers, dotted and quoted
// keys, comments, multi-line arrays and multi-line strings; anything odder only costs a
// line number, never correctness, because the real parse is done by the library.
func keyLines(data []byte) keyIndex {
	ix := keyIndex{}
	var (
		table     []string // current table, plain
		indexed   []string // current table, with array indexes
		arrayN    = map[string]int{}
		depth     int    // open brackets of a value continuing over lines
		multiline string // `"""` or `'''` while inside a multi-line string
	)
	for n, line := range strings.Split(string(data), "\n") {
		lineNo := n + 1
		if multiline != "" {
			if i := strings.Index(line, multiline); i >= 0 {
				line, multiline = line[i+3:], ""
			} else {
				continue
			}
		}
		code, ml := stripLine(line)
		if depth > 0 {
			depth += bracketDelta(code)
			multiline = ml
			continue
		}
		t := strings.TrimSpace(code)
		switch {
		case t == "":
		case strings.HasPrefix(t, "[["):
			k, ok := splitKey(strings.TrimSuffix(strings.TrimPrefix(t, "[["), "]]"))
			if !ok {
				continue
			}
			table = k
			plain := strings.Join(k, ".")
			idx := arrayN[plain]
			arrayN[plain]++
			indexed = append(slicesClone(k[:len(k)-1]), fmt.Sprintf("%s[%d]", k[len(k)-1], idx))
			ix.add(plain, lineNo)
			ix.add(strings.Join(indexed, "."), lineNo)
		case strings.HasPrefix(t, "["):
			k, ok := splitKey(strings.TrimSuffix(strings.TrimPrefix(t, "["), "]"))
			if !ok {
				continue
			}
			table, indexed = k, k
			ix.add(strings.Join(k, "."), lineNo)
		default:
			eq := indexOutsideQuotes(t, '=')
			if eq < 0 {
				continue
			}
			k, ok := splitKey(t[:eq])
			if !ok {
				continue
			}
			ix.add(strings.Join(append(slicesClone(table), k...), "."), lineNo)
			ix.add(strings.Join(append(slicesClone(indexed), k...), "."), lineNo)
			depth = bracketDelta(t[eq+1:])
			if depth < 0 {
				depth = 0
			}
			multiline = ml
		}
	}
	return ix
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// stripLine removes a comment and string contents from line, and says whether a multi-line
// string starts (and does not end) on it.
func stripLine(line string) (code, multiline string) {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch c {
		case '#':
			return b.String(), ""
		case '"', '\'':
			delim := string(c)
			if strings.HasPrefix(line[i:], delim+delim+delim) {
				end := strings.Index(line[i+3:], delim+delim+delim)
				if end < 0 {
					b.WriteString(`""`)
					return b.String(), delim + delim + delim
				}
				i += 3 + end + 2
				b.WriteString(`""`)
				continue
			}
			j := i + 1
			for j < len(line) && line[j] != c {
				if c == '"' && line[j] == '\\' {
					j++
				}
				j++
			}
			b.WriteString(line[i:min(j+1, len(line))])
			i = j
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// eachOutsideQuotes calls fn with the index and byte of each character of s that is not
// inside a basic ("...", with backslash escapes) or literal ('...') string, until fn
// returns false.
func eachOutsideQuotes(s string, fn func(i int, c byte) bool) {
	inStr := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr != 0:
			if c == '\\' && inStr == '"' {
				i++
			} else if c == inStr {
				inStr = 0
			}
		case c == '"' || c == '\'':
			inStr = c
		default:
			if !fn(i, c) {
				return
			}
		}
	}
}

// bracketDelta counts opening minus closing brackets and braces outside strings.
func bracketDelta(code string) int {
	d := 0
	eachOutsideQuotes(code, func(_ int, c byte) bool {
		switch c {
		case '[', '{':
			d++
		case ']', '}':
			d--
		}
		return true
	})
	return d
}

// indexOutsideQuotes is the index of the first want outside strings, or -1.
func indexOutsideQuotes(s string, want byte) int {
	at := -1
	eachOutsideQuotes(s, func(i int, c byte) bool {
		if c == want {
			at = i
			return false
		}
		return true
	})
	return at
}

// splitKey splits a (possibly dotted, possibly quoted) TOML key into its parts.
func splitKey(s string) ([]string, bool) {
	var parts []string
	for {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, false
		}
		var part string
		switch s[0] {
		case '"', '\'':
			end := indexOutsideQuotes(s, '.')
			raw := s
			if end >= 0 {
				raw = s[:end]
			}
			raw = strings.TrimSpace(raw)
			if s[0] == '"' {
				u, err := strconv.Unquote(raw)
				if err != nil {
					return nil, false
				}
				part = u
			} else {
				if len(raw) < 2 || raw[len(raw)-1] != '\'' {
					return nil, false
				}
				part = raw[1 : len(raw)-1]
			}
			if end < 0 {
				return append(parts, part), true
			}
			parts, s = append(parts, part), s[end+1:]
			continue
		}
		end := strings.IndexByte(s, '.')
		raw := s
		if end >= 0 {
			raw = s[:end]
		}
		raw = strings.TrimSpace(raw)
		for _, c := range raw {
			if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return nil, false
			}
		}
		if raw == "" {
			return nil, false
		}
		parts = append(parts, raw)
		if end < 0 {
			return parts, true
		}
		s = s[end+1:]
	}
}
