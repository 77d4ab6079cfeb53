package agent

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ChunkerConfig tunes how a streamed answer is cut into spoken lines. Zero values take the
// defaults.
type ChunkerConfig struct {
	// FirstMinWords: the first line may end at a clause boundary (comma, semicolon, colon,
	// dash) once it holds this many words, so the caller hears something fast but never a lone
	// "Sure,". A complete sentence qualifies at any length ("One moment."). It is also the
	// fewest words a clause line split off a long sentence holds. Default 3.
	FirstMinWords int
	// MaxPhrase is the breath: a phrase longer than this many runes is split at a clause
	// boundary, so a voice says each phrase in one breath. A sentence without a clause
	// boundary stays whole, and a split never leaves a lone word. Default 120 (about seven
	// seconds of speech).
	MaxPhrase int

	// The speech shaper (docs/speech.md); zero values shape lists and symbols for English.

	// Languages are the agent's speech languages ("en", "es", "de", "fr"): their abbreviations
	// never end a phrase, and the first one speaks the shaper's words. Default English.
	Languages []string
	// NoLists keeps list items, headings and table rows from becoming phrases of their own.
	NoLists bool
	// NoSymbols leaves symbols (~ * # | > < dashes, stray brackets) as the model wrote them.
	NoSymbols bool
	// Ordinals introduces each list item with a spoken ordinal: "First, …", "Second, …".
	Ordinals bool
	// SpellLinks spells web and e-mail addresses: "example dot com". Each word is then held
	// until it is whole, which can delay a phrase by one model token.
	SpellLinks bool
}

// minPhraseWords is the fewest words a phrase holds, unless the answer has no more.
const minPhraseWords = 2

// Chunker turns a model's streamed text into speakable lines: cleaned (see Clean), cut only
// where the cut is certain, never inside a word, number, time, price, phone number, address
// or abbreviation.
//
// The first line ends at the first clause boundary that closes FirstMinWords words, or at the
// first sentence end; later lines end at sentence ends, at the phrase breaks the shaper marks
// (list items, headings, table rows, paragraphs), and at a clause boundary only to keep a
// line under MaxPhrase runes. No line is a lone word unless the answer is one: a one-word
// sentence joins the next, and a line after the first is held until two words follow it, so
// that a lone last word joins it.
//
// A sentence end is ". ", "! ", "? ", "… " and their kin, optionally followed by closing
// quotes or brackets, and then a word that does not start in lower case ("etc. and", "p.m.
// or", "… well" go on). A full stop is held until the next word shows what it was: "3." +
// "30 p.m." is a time, "$89." + "50" a price. A full stop after a title or a Latin
// abbreviation (Dr. Mr. Mrs. Ms. St. vs. approx. e.g. i.e.), after a single initial (J. R.)
// or after "No." before a number never ends a sentence. One after a dotted abbreviation (a.m.,
// p.m., U.S.) ends it only before a capitalised word, and for a.m./p.m. not before a weekday
// or a time zone ("9 a.m. Monday", "10 a.m. EST"). One after a weekday, a month, a unit or a
// street type goes on before a number or a date word ("Tue. Dec. 3rd", "6 ft. 2 in.",
// "Market St. Suite 4"), and the comma inside a date is no clause boundary ("Tue., Dec. 3rd",
// "March 14, 2025"); the abbreviations are those of the declared Languages. Full-width stops
// (。！？) end a sentence without a space.
//
// Lines depend only on the text, not on how it was split into deltas, unless Cut is called.
// A Chunker is not safe for concurrent use.
type Chunker struct {
	cl        cleaner // holds the cleaned text in cl.out
	minWords  int
	maxPhrase int
	langs     []*language
	dateDots  bool // a declared language writes "3. Dezember"

	// held is a finished phrase after the first, kept until the text after it holds two
	// words, so that a last lone word ("… Tuesday." "Thanks!") joins it instead.
	held string

	start int  // cl.out[start:] is the line in progress
	scan  int  // cl.out[start:scan] has been judged
	words int  // words (tokens with a letter or digit) in cl.out[start:scan]
	runes int  // runes in cl.out[start:scan]
	inTok bool // cl.out[scan-1] is part of a token
	tokOK bool // that token has a letter or digit
	said  bool // a line has gone out: the first-line rule is over

	// The last clause boundary of a long sentence in progress, where it may be split.
	clause, clauseWords, clauseRunes int

	// The punctuation run at run.at as far as judge measured it before waiting for more, so
	// a long run arriving byte by byte is measured once.
	run struct {
		at, end, last, stops int
		other                bool
	}
}

// DefaultBreath is MaxPhrase's default.
const DefaultBreath = 120

// NewChunker returns a Chunker for one answer.
func NewChunker(cfg ChunkerConfig) *Chunker {
	c := &Chunker{minWords: cfg.FirstMinWords, maxPhrase: cfg.MaxPhrase}
	if c.minWords <= 0 {
		c.minWords = 3
	}
	if c.maxPhrase <= 0 {
		c.maxPhrase = DefaultBreath
	}
	c.cl.opt = cfg.shape()
	c.langs = c.cl.opt.langs
	for _, l := range c.langs {
		c.dateDots = c.dateDots || l.ordinalDots
	}
	// One allocation for both buffers: raw holds a few bytes at a time, out one or two lines.
	buf := make([]byte, 0, 64+256)
	c.cl.raw, c.cl.out = buf[:0:64], buf[64:64]
	return c
}

// Push adds a model text delta and returns the lines that became complete, in order, cleaned.
// It costs time in proportion to the delta, not to the text held.
func (c *Chunker) Push(delta string) []string {
	c.cl.raw = append(c.cl.raw, delta...)
	c.cl.feed(false)
	lines := c.split(nil, false)
	c.compact()
	return lines
}

// Cut returns a finished phrase held back, if any; otherwise the pending text up to a whole
// word, keeping the rest pending; "" when there is no such place. A word is whole once a
// break follows it, and a sentence once it ends in a mark that surely ends it ("course.",
// not "at 3." nor "Dr."). Cut never returns a lone word nor leaves one: the phrase it returns holds
// at least two words, and at least two words (the last may be partial) stay pending, so
// that "Of" is never said apart from "course." Cut never ends a line inside a number group,
// a time or a phone number ("+1 (415) 555-0123", "3:30 p.m.", "10 a.m."), nor after a title
// or an initial ("Dr." | "Smith"). It looks for that word only in the last cutWindow bytes,
// so that a caller retrying Cut on every token pays a bounded cost. After a Cut, the
// first-line rule is over.
func (c *Chunker) Cut() string {
	if c.held != "" {
		s := c.held
		c.held = ""
		return s
	}
	b := c.cl.out
	lo := max(c.start, len(b)-cutWindow)
	at, after := -1, 0
	if c.start < len(b) && c.closesSentence(trimLine(b[c.start:])) && hasWords(b[c.start:], minPhraseWords) {
		at = len(b) // a finished sentence (not "at 3." nor "Dr."): it leaves nothing half said
	}
	inWord := false
	for i := len(b) - 1; at < 0 && i > lo; i-- {
		if !isSep(b[i]) {
			if utf8.RuneStart(b[i]) {
				r, _ := utf8.DecodeRune(b[i:])
				switch {
				case r >= 0x2e80 && isIdeograph(r):
					after++
				case !inWord && isAlnumRune(r):
					inWord = true
					after++
				}
			}
			continue
		}
		inWord = false
		if after >= minPhraseWords && c.cutAt(b, lo, i) && hasWords(b[c.start:i], minPhraseWords) {
			at = i
		}
	}
	if at < 0 {
		return ""
	}
	s := lineString(trimLine(b[c.start:at]))
	c.start, c.scan, c.said = at, at, true
	c.resetLine()
	return s
}

// hasWords reports whether b holds at least n words (tokens with a letter or a digit). It
// stops at the nth, so a Cut retried on every token pays for the first words only.
func hasWords(b []byte, n int) bool {
	k, in, ok := 0, false, false
	for len(b) > 0 && k < n {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == ' ' || r == '\n' {
			in = false
			continue
		}
		if !in {
			in, ok = true, false
		}
		if !ok && isAlnumRune(r) {
			ok = true
			k++
		} else if r >= 0x2e80 && isIdeograph(r) {
			k++
		}
	}
	return k >= n
}

func isSep(ch byte) bool { return ch == ' ' || ch == '\n' }

// lineString is a line as spoken: a phrase break inside it (a lone list item joined to the
// next) is a space.
func lineString(b []byte) string {
	s := string(b)
	if strings.IndexByte(s, '\n') >= 0 {
		s = strings.ReplaceAll(s, "\n", " ")
	}
	return s
}

// cutWindow bounds how far back Cut looks for a place to cut.
const cutWindow = 512

// Pending reports whether pushed text is still held: neither returned in a line nor dropped by
// cleaning.
func (c *Chunker) Pending() bool {
	return c.start < len(c.cl.out) || len(c.cl.raw) > 0 || c.held != ""
}

// End flushes at the end of the model stream and makes the Chunker ready for a new answer.
// With complete, the model finished normally and the rest comes back as lines. Otherwise the
// stream broke or was cut at max_tokens: only text up to the last complete sentence comes
// back, and the unfinished tail is dropped; a final full stop counts only when nothing could
// still have followed it ("at 3." may have been "at 3.30", "9 a.m." "9 a.m. to 5 p.m.").
func (c *Chunker) End(complete bool) []string {
	c.cl.feed(true)
	lines := c.split(nil, true)
	rest := trimLine(c.cl.out[c.start:])
	say := len(rest) > 0 && (complete || c.words > 0 && c.closesSentence(rest))
	if c.held != "" {
		if say && c.words < minPhraseWords {
			lines = append(lines, c.held+" "+lineString(rest)) // the lone last word joins
			say = false
		} else {
			lines = append(lines, c.held)
		}
	}
	if say {
		lines = append(lines, lineString(rest))
	}
	c.cl = cleaner{raw: c.cl.raw[:0], out: c.cl.out[:0], opt: c.cl.opt}
	c.start, c.scan, c.said, c.held = 0, 0, false, ""
	c.resetLine()
	c.run.at, c.run.end = 0, 0
	return lines
}

// split judges the text from scan on, appending the lines it completes. It stops at a mark
// whose meaning the text does not yet show; with final, the text is complete and it judges
// all of it (the end of the text is left to End).
func (c *Chunker) split(lines []string, final bool) []string {
	b := c.cl.out
	for c.scan < len(b) {
		ch := b[c.scan]
		if isSep(ch) && c.scan == c.start {
			c.start++ // the break after the last line
			c.scan++
			continue
		}
		if ch == '\n' {
			// A phrase break from the shaper: a list item, a heading, a table row, a
			// paragraph. A lone word goes on into the next phrase.
			c.count(' ')
			c.scan++
			lines = c.emit(lines, c.scan)
			continue
		}
		r, n := rune(ch), 1
		if ch >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(b[c.scan:])
		}
		if markOf(r) == markNone {
			c.count(r)
			c.scan += n
			if c.held != "" && c.words >= minPhraseWords {
				lines = append(lines, c.held)
				c.held = ""
			}
			if c.clause > 0 && c.runes > c.maxPhrase {
				lines = c.splitLong(lines)
			}
			continue
		}
		end, bound, ok := c.judge(b, final)
		if !ok {
			break
		}
		for c.scan < end {
			r, n := utf8.DecodeRune(b[c.scan:])
			c.count(r)
			c.scan += n
		}
		switch bound {
		case markTerm:
			lines = c.emit(lines, end)
		case markClause:
			lines = c.atClause(lines, end)
		}
		if c.clause > 0 && c.runes > c.maxPhrase {
			lines = c.splitLong(lines)
		}
	}
	return lines
}

// Marks: what a punctuation rune can end.
const (
	markNone   = iota
	markTerm   // a sentence: . ! ? …
	markClause // a clause: , ; : — –
	markWide   // a sentence, with no space after it: 。！？
	markWideCl // a clause, with no space after it: ，、
	markHyphen // a clause only as " - "
)

func markOf(r rune) int {
	switch r {
	case '.', '!', '?', '…', '‼', '⁇', '⁈', '⁉', '‽', '؟', '۔', '।', '॥', '։', '።':
		return markTerm
	case ',', ';', ':', '—', '–':
		return markClause
	case '。', '！', '？', '．', '｡':
		return markWide
	case '，', '；', '：', '、':
		return markWideCl
	case '-':
		return markHyphen
	}
	return markNone
}

func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '”', '’', '»', '›', '」', '』', '）', '］', '】', '〕', '〉', '》':
		return true
	}
	return false
}

// judge decides the mark at scan: it returns the end of the punctuation run there and whether
// that end is a sentence boundary (markTerm), a clause boundary (markClause) or neither
// (markNone). ok is false when the text after the run is not in yet.
func (c *Chunker) judge(b []byte, final bool) (end, bound int, ok bool) {
	i := c.scan
	if b[i] == '-' {
		switch {
		case i == c.start || !isSep(b[i-1]):
			return i + 1, markNone, true // 555-0123, well-known
		case i+1 == len(b):
			return i + 1, markNone, final
		case b[i+1] == ' ':
			return i + 1, markClause, true
		}
		return i + 1, markNone, true
	}
	// The run: marks and closing quotes or brackets, as in `?!`, `..."`, `.)`.
	j, last, stops, other := i, markNone, 0, false
	if c.run.at == i && c.run.end > i {
		j, last, stops, other = c.run.end, c.run.last, c.run.stops, c.run.other
	}
run:
	for j < len(b) {
		r, n := utf8.DecodeRune(b[j:])
		m := markOf(r)
		switch {
		case m != markNone && m != markHyphen:
			last = m
			if r == '.' {
				stops++
			} else if m == markTerm || m == markWide {
				other = true
			}
		case !isCloser(r):
			break run
		}
		j += n
	}
	if j == len(b) {
		c.run.at, c.run.end, c.run.last, c.run.stops, c.run.other = i, j, last, stops, other
		return j, markNone, final // the end of the text: End decides
	}
	switch last {
	case markWide:
		return j, markTerm, true
	case markWideCl:
		return j, markClause, true
	}
	if b[j] == '\n' {
		return j, markNone, true // the phrase break after it ends the phrase
	}
	if b[j] != ' ' {
		return j, markNone, true // 3.30, e.g, example.com, ?x=1, 3:30, 1,299
	}
	if j+1 == len(b) {
		return j, markNone, final // cannot happen: a space comes with the rune after it
	}
	if last == markClause {
		return c.dateComma(b, i, j, final)
	}
	next, _ := utf8.DecodeRune(b[j+1:])
	if unicode.IsLower(next) {
		return j, markNone, true // etc. and, p.m. or, … well
	}
	if other || stops > 1 {
		return j, markTerm, true // ! ? … ...
	}
	// A single full stop: what does the word before it say?
	w := wordBefore(b, c.start, i)
	if len(w) == 0 {
		return j, markTerm, true
	}
	if r, n := utf8.DecodeRune(w); n == len(w) && unicode.IsLetter(r) {
		return j, markNone, true // an initial: J. R. Tolkien
	}
	f := abbrevIn(c.langs, w)
	switch {
	case never(f, w):
		return j, markNone, true // Dr. Patel, Dec. 3rd, 5 min. later
	case f&abbrUnit != 0 && isDigitRune(next):
		return j, markNone, true // 5 ft. 2 in.
	case f&abbrStreet != 0:
		if isDigitRune(next) || next == '#' {
			return j, markNone, true // Reforma Av. 25
		}
		nw, ok := nextWord(b, j+1, final)
		if !ok {
			return 0, 0, false
		}
		if streetNext[strings.ToLower(string(nw))] {
			return j, markNone, true // Market St. Suite 4, Oak Ave. NW
		}
		return j, markTerm, true // 12 Oak Ave. See you!
	case f&(abbrDay|abbrMonth) != 0:
		if isDigitRune(next) {
			return j, markNone, true // Dec. 3rd
		}
		nw, ok := nextWord(b, j+1, final)
		if !ok {
			return 0, 0, false
		}
		if abbrevIn(c.langs, nw)&(abbrDay|abbrMonth) != 0 {
			return j, markNone, true // Tue. Dec. 3
		}
		return j, markTerm, true // Mon–Fri. Call us
	case f&abbrNumber != 0:
		if isDigitRune(next) || next == '#' {
			return j, markNone, true // No. 5
		}
		return j, markTerm, true // No. We are closed.
	case f&abbrClock != 0:
		if !isCapital(next) {
			return j, markNone, true // 10 a.m. (Eastern)
		}
		nw, ok := nextWord(b, j+1, final)
		if !ok {
			return 0, 0, false // is it "Mon" or "Money"?
		}
		if abbrevIn(c.langs, nw)&(abbrDay|abbrZone) != 0 {
			return j, markNone, true // 9 a.m. Monday, 10 a.m. EST
		}
		return j, markTerm, true
	case c.dateDots && len(w) <= 2 && isDigitRune(rune(w[0])) && isDigitRune(lastAlnum(w)) && isCapital(next):
		nw, ok := nextWord(b, j+1, final)
		if !ok {
			return 0, 0, false
		}
		if abbrevIn(c.langs, nw)&abbrMonth != 0 {
			return j, markNone, true // am 3. Dezember
		}
	}
	if dotted(w) && !isCapital(next) {
		return j, markNone, true // U.S. 5
	}
	return j, markTerm, true
}

// dateComma judges a comma (or other clause mark) run ending at j: inside a date it is no
// boundary ("Tue., Dec. 3rd", "Tuesday, December 3", "Dec. 3, 2024").
func (c *Chunker) dateComma(b []byte, i, j int, final bool) (end, bound int, ok bool) {
	if b[j-1] != ',' {
		return j, markClause, true
	}
	w := bytes.TrimRight(wordBefore(b, c.start, i), ".")
	next, _ := utf8.DecodeRune(b[j+1:])
	if len(w) == 0 {
		return j, markClause, true
	}
	if isDigitRune(firstAlnum(w)) && isDigitRune(next) {
		return j, markNone, true // Dec. 3, 2024; February 14th, 2025
	}
	if abbrevIn(c.langs, w)&abbrDay == 0 {
		return j, markClause, true
	}
	if isDigitRune(next) {
		return j, markNone, true // Tuesday, 3 December
	}
	nw, ok := nextWord(b, j+1, final)
	if !ok {
		return 0, 0, false
	}
	if abbrevIn(c.langs, bytes.TrimRight(nw, "."))&abbrMonth != 0 {
		return j, markNone, true // Tue., Dec. 3rd
	}
	return j, markClause, true
}

// nextWord returns the letters from k on, with a full stop after them; ok is false when the
// text may still add to them.
func nextWord(b []byte, k int, final bool) ([]byte, bool) {
	e := k
	for e < len(b) && e-k <= maxDayZone {
		r, n := utf8.DecodeRune(b[e:])
		if !unicode.IsLetter(r) && r != '.' {
			break
		}
		e += n
	}
	if e == len(b) && !final {
		return nil, false
	}
	return bytes.TrimRight(b[k:e], "."), true
}

// count adds the rune at scan to the line's tallies.
func (c *Chunker) count(r rune) {
	c.runes++
	if r == ' ' || r == '\n' {
		c.inTok = false
		return
	}
	if !c.inTok {
		c.inTok, c.tokOK = true, false
	}
	if !c.tokOK && isAlnumRune(r) {
		c.tokOK = true
		c.words++
	} else if r >= 0x2e80 && isIdeograph(r) {
		c.words++ // scripts without spaces: a character is a word
	}
}

// isIdeograph reports whether r is written without spaces between words (Chinese, Japanese).
func isIdeograph(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana)
}

// maxDayZone is the length in bytes of the longest weekday, month or time zone name looked
// for after a time or a date's comma, "miércoles" and "septiembre" with a full stop.
const maxDayZone = 12

func (c *Chunker) resetLine() {
	c.words, c.runes, c.inTok, c.tokOK = 0, 0, false, false
	c.clause, c.clauseWords, c.clauseRunes = 0, 0, 0
}

// emit ends the line at end, unless it has fewer than two words yet (a lone "Sure!" or "…"
// joins the next line).
func (c *Chunker) emit(lines []string, end int) []string {
	if c.words < minPhraseWords {
		return lines
	}
	lines = c.put(lines, lineString(trimLine(c.cl.out[c.start:end])))
	c.start = end
	c.resetLine()
	return lines
}

// put adds a finished phrase: the first goes at once, a later one is held until the text
// after it holds two words (see held).
func (c *Chunker) put(lines []string, s string) []string {
	if !c.said {
		c.said = true
		return append(lines, s)
	}
	if c.held != "" {
		lines = append(lines, c.held)
	}
	c.held = s
	return lines
}

// atClause handles a clause boundary at end: the first line ends there once it has enough
// words; a later one only when it is already long, or is remembered in case it grows so.
func (c *Chunker) atClause(lines []string, end int) []string {
	if c.words < c.minWords {
		return lines
	}
	if !c.said || c.runes > c.maxPhrase {
		return c.emit(lines, end)
	}
	c.clause, c.clauseWords, c.clauseRunes = end, c.words, c.runes
	return lines
}

// splitLong ends a sentence grown past MaxPhrase at its last clause boundary.
func (c *Chunker) splitLong(lines []string) []string {
	if c.words-c.clauseWords < minPhraseWords {
		return lines // wait for a second word after the clause: the split leaves no lone word
	}
	lines = c.put(lines, lineString(trimLine(c.cl.out[c.start:c.clause])))
	c.start = c.clause
	c.words -= c.clauseWords
	c.runes -= c.clauseRunes
	c.clause, c.clauseWords, c.clauseRunes = 0, 0, 0
	return lines
}

// compact drops the text of returned lines once it is at least half the buffer, so a Push
// copies no more than it adds, on average.
func (c *Chunker) compact() {
	shift := c.start - keepTail
	if shift <= 0 || c.start*2 < len(c.cl.out) {
		return
	}
	n := copy(c.cl.out, c.cl.out[shift:])
	c.cl.out = c.cl.out[:n]
	c.start -= shift
	c.scan -= shift
	if c.clause > 0 {
		c.clause -= shift
	}
	c.run.at -= shift
	c.run.end -= shift
}

// keepTail is how much of the text already returned compact keeps: the shaper reads the last
// word it wrote (a number? a time? a day?) to shape what follows it.
const keepTail = 32

// cutAt reports whether the pending line may end at at, where a space is (or is due); the
// word before it is read no further back than lo.
func (c *Chunker) cutAt(b []byte, lo, at int) bool {
	w1 := wordBefore(b, lo, at)
	if len(w1) == 0 {
		return false
	}
	e := at
	for e < len(b) && (e == at || !isSep(b[e])) {
		e++
	}
	var w2 []byte
	if at < len(b) {
		w2 = b[at+1 : e]
	}
	whole := e < len(b) // a space follows the next word
	if w1[len(w1)-1] == '.' {
		core := w1[:len(w1)-1]
		if r, n := utf8.DecodeRune(core); n == len(core) && unicode.IsLetter(r) {
			return false // J. | R.
		}
		f := abbrevIn(c.langs, core)
		if never(f, core) {
			return false // Dr. | Smith
		}
		if f&abbrNumber != 0 && (len(w2) == 0 || isDigitRune(firstAlnum(w2))) {
			return false // No. | 5
		}
	}
	if !isDigitRune(lastAlnum(w1)) {
		return true
	}
	// After a number: not before another group of it, nor before a.m., p.m. or o'clock.
	f := firstAlnum(w2)
	if f == 0 && !whole || isDigitRune(f) {
		return false
	}
	var buf [8]byte
	l := buf[:0]
	for _, ch := range w2 {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch >= 'a' && ch <= 'z' && len(l) < len(buf) {
			l = append(l, ch)
		}
	}
	for _, clock := range [...]string{"am", "pm", "oclock"} {
		if string(l) == clock || !whole && len(l) < len(clock) && clock[:len(l)] == string(l) {
			return false
		}
	}
	return true
}

// closesSentence reports whether a line left at the end of a broken stream ends a sentence
// for sure.
func (c *Chunker) closesSentence(line []byte) bool {
	k := len(line)
	for k > 0 {
		r, n := utf8.DecodeLastRune(line[:k])
		if !isCloser(r) {
			break
		}
		k -= n
	}
	r, n := utf8.DecodeLastRune(line[:k])
	switch m := markOf(r); {
	case m == markWide:
		return true
	case m != markTerm:
		return false
	case r != '.' || k-n > 0 && line[k-n-1] == '.':
		return true // ! ? … ...
	}
	w := wordBefore(line, 0, k-n)
	if len(w) == 0 {
		return true
	}
	if r, n := utf8.DecodeRune(w); n == len(w) && unicode.IsLetter(r) {
		return false // an initial
	}
	for _, ch := range w {
		if ch >= '0' && ch <= '9' {
			return false // at 3. | 30
		}
	}
	if f := abbrevIn(c.langs, w); never(f, w) || f&abbrClock != 0 {
		return false
	}
	return !dotted(w)
}

// wordBefore returns the word that ends at i, without opening quotes or brackets.
func wordBefore(b []byte, start, i int) []byte {
	k := i
	for k > start && !isSep(b[k-1]) {
		k--
	}
	w := b[k:i]
	for len(w) > 0 {
		r, n := utf8.DecodeRune(w)
		switch r {
		case '(', '[', '"', '\'', '“', '‘', '«', '¿', '¡':
			w = w[n:]
			continue
		}
		break
	}
	return w
}

// dotted reports whether w is letters with inner full stops: U.S, a.m, example.com.
func dotted(w []byte) bool {
	dot := false
	for len(w) > 0 {
		r, n := utf8.DecodeRune(w)
		switch {
		case r == '.':
			dot = true
		case !unicode.IsLetter(r):
			return false
		}
		w = w[n:]
	}
	return dot
}

// isCapital reports whether r can start a sentence as a letter: upper case, or a script
// without case.
func isCapital(r rune) bool { return unicode.IsLetter(r) && !unicode.IsLower(r) }

func firstAlnum(w []byte) rune {
	for len(w) > 0 {
		r, n := utf8.DecodeRune(w)
		if isAlnumRune(r) {
			return r
		}
		w = w[n:]
	}
	return 0
}

func lastAlnum(w []byte) rune {
	for len(w) > 0 {
		r, n := utf8.DecodeLastRune(w)
		if isAlnumRune(r) {
			return r
		}
		w = w[:len(w)-n]
	}
	return 0
}

func hasWord(b []byte) bool { return firstAlnum(b) != 0 }

// trimLine drops the spaces around a line; the cleaned text has no other whitespace.
func trimLine(b []byte) []byte {
	for len(b) > 0 && isSep(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSep(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
