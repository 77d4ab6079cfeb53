package agent

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean returns s as a text-to-speech engine should read it.
//
//   - Markdown markup goes and its words stay: **bold**, *italic*, __bold__, _italic_,
//     ~~struck~~ and `code` lose their markers, [text](url) becomes text, and the markers of
//     headings (#), list items (-, *, +, 1., 1)), quotes (>) and rules (---) at the start of a
//     line go.
//   - What is not meant to be spoken goes whole: fenced code blocks (``` … ```), JSON objects
//     and arrays ({…}, and […] when it opens with {, [ or "), images (![alt](url)), emoji and
//     other pictographs, arrows and symbols, control and format characters. A dropped block,
//     object or emoji counts as a word break, so the words around it stay apart. An unclosed
//     block or object drops everything after its start: a cut-off blob must not be read out.
//   - Every run of whitespace, newlines included, becomes one space, with none at either end
//     and none before . , ; : ! ? or …
//
// Underscores inside a word (first_name) are text, and so are °, № and the degree signs,
// which a voice reads.
//
// Clean also shapes s for speech with the default settings (see Shape and docs/speech.md):
// list items and headings end phrases, symbols become words ("~2" → "about 2").
//
// The Chunker cleans a streamed answer with the same code, so the lines it returns, joined,
// hold the text of Clean of everything pushed (spaces aside: a full-width stop ends a line
// without one).
func Clean(s string) string { return Shape(ChunkerConfig{}, s) }

// Shape returns s cleaned and shaped for speech with cfg's speech settings, as a Chunker with
// cfg would say it, phrase breaks as spaces: see docs/speech.md for every rule.
func Shape(cfg ChunkerConfig, s string) string {
	cl := cleaner{opt: cfg.shape()}
	cl.raw = append(cl.raw, s...)
	cl.feed(true)
	for i, ch := range cl.out {
		if ch == '\n' {
			cl.out[i] = ' '
		}
	}
	return string(cl.out)
}

// cleanMode is what the cleaner is inside of.
type cleanMode uint8

const (
	cleanText   cleanMode = iota
	cleanFence            // a ``` code block: dropped up to the closing ```
	cleanBlob             // a JSON object or array: dropped up to its closing bracket
	cleanTarget           // the (url) after a link's [text]: dropped
	cleanAlt              // the [alt] of an image: dropped
)

// cleaner is Clean as a stream. Input goes into raw; feed moves what it can decide into out
// and keeps in raw only the few bytes whose meaning depends on what comes next (a "*" that
// may open "**", a "`" that may open a fence, a "3" at a line start that may be "3. "). It
// decides nothing before it has seen what it needs, so its output does not depend on how the
// input was split, and it only ever appends to out (whose reader may drop what it has read).
//
// out holds no whitespace but single spaces, and a space goes in only together with the rune
// after it: a trailing separator waits in space. A reader of out therefore knows that the
// last word may still grow, and that a word followed by a space is whole.
type cleaner struct {
	raw []byte
	out []byte

	mode    cleanMode
	depth   int  // bracket depth in a blob or a link target
	inStr   bool // inside a JSON string in a blob
	esc     bool // after a backslash in a JSON string
	ticks   int  // backticks in a row inside a fence
	midLine bool // false at the start of a line, where block markers may stand
	space   bool // a word break is due before the next rune written
	wrote   bool // out has had a rune (it never starts with a space)
	prev    rune // the last input rune of text, ' ' for any break; 0 at the start
	seen    int  // bytes at the start of raw already measured by a step that had to wait

	// Speech shaping (docs/speech.md).
	opt     shapeOpts
	brk     bool // the separator due is a phrase break: a '\n' goes into out
	soft    bool // that break is a paragraph's: before a lower-case letter it is a space
	itemBrk bool // that break starts a list item: after a one-word item it is a comma
	words   int  // words written since the last phrase break
	inWord  bool // the last rune written is inside a word already counted
	block   bool // the line is a list item, a heading or a table row: its newline is a break
	nl      int  // newlines since the last rune written: two make a paragraph break
	table   bool // the line is a table row
	cells   bool // a cell of this row has been written: the next one follows a comma
	item    int  // the number of the last list item, for inline lists and ordinals
	paren   int  // open parentheses written: a closing one without is dropped
	checked bool // spelling links: the word at raw's start is not a link
}

// shapeOpts are a Chunker's speech settings, resolved.
type shapeOpts struct {
	lists, symbols, ordinals, spell bool
	langs                           []*language
}

func (c ChunkerConfig) shape() shapeOpts {
	return shapeOpts{lists: !c.NoLists, symbols: !c.NoSymbols, ordinals: c.Ordinals, spell: c.SpellLinks, langs: langsOf(c.Languages)}
}

// lang is the language that speaks: the first declared.
func (o *shapeOpts) lang() *language { return o.langs[0] }

// cleanPlain marks the ASCII bytes that text copies as they are, whatever follows them.
var cleanPlain = func() (t [utf8.RuneSelf]bool) {
	for b := byte('!'); b <= '~'; b++ {
		t[b] = true
	}
	for _, b := range []byte("`{}[]!*_~|-#<>()") {
		t[b] = false
	}
	return t
}()

// feed cleans as much of raw as can be decided. With final, the input is complete: all of
// raw is decided, and an unclosed block or blob is dropped.
func (cl *cleaner) feed(final bool) {
	b := cl.raw
	p := 0
	for p < len(b) {
		if cl.mode == cleanText && cl.midLine {
			// The common case, plain words, without a call per byte.
			q := p
			for q < len(b) {
				ch := b[q]
				if ch == ' ' {
					cl.space, cl.prev, cl.checked = true, ' ', false
				} else if ch < utf8.RuneSelf && cleanPlain[ch] && !cl.wordStep(ch) {
					cl.writeByte(ch)
				} else {
					break
				}
				q++
			}
			if q > p {
				p, cl.seen = q, 0
				continue
			}
		}
		n := cl.step(b[p:], final)
		if n == 0 {
			break // needs more input
		}
		p, cl.seen = p+n, 0
	}
	cl.raw = b[:copy(b, b[p:])]
	if final {
		cl.raw = cl.raw[:0]
		cl.mode, cl.depth, cl.ticks, cl.seen = cleanText, 0, 0, 0
	}
}

// blobStarts are, for each opening bracket, the first bytes after it (blanks skipped) that make
// it the start of a JSON blob.
var blobStarts = map[byte]string{'{': `"}`, '[': `{["`}

// peekBlank returns the first byte after b[0] that is not blank, 0 at the end of the final
// input. ok is false when the input ends first and more may come: the caller waits for it.
func (cl *cleaner) peekBlank(b []byte, final bool) (next byte, ok bool) {
	k := max(1, cl.seen)
	for k < len(b) && isBlankByte(b[k]) {
		k++
	}
	if k == len(b) {
		cl.seen = k
		return 0, final
	}
	return b[k], true
}

// step consumes the start of b and reports how many bytes it took, 0 when it must see more.
func (cl *cleaner) step(b []byte, final bool) int {
	switch cl.mode {
	case cleanFence:
		return cl.skipFence(b)
	case cleanBlob:
		return cl.skipBlob(b)
	case cleanTarget:
		return cl.skipTarget(b)
	case cleanAlt:
		i := bytes.IndexAny(b, "]\n")
		if i < 0 {
			return len(b)
		}
		cl.mode = cleanText // the "]" (or the newline) is read as text
		if i > 0 {
			return i
		}
	}
	return cl.text(b, final)
}

func (cl *cleaner) text(b []byte, final bool) int {
	if !final && !utf8.FullRune(b) {
		return 0 // a rune split across deltas
	}
	if !cl.midLine {
		n, kind, ok := cl.lineMarker(b, final)
		if !ok {
			return 0
		}
		if n > 0 {
			cl.space, cl.prev = true, ' '
			cl.marker(kind, b[:n])
			return n // still at the line start: "> - item" has two markers
		}
		if b[0] == '|' && cl.opt.lists {
			cl.table, cl.block, cl.cells = true, true, false
			cl.breakDue()
		}
	}
	r, n := utf8.DecodeRune(b)
	if r == '\n' {
		cl.newline()
		return n
	}
	if unicode.IsSpace(r) {
		cl.space, cl.prev, cl.checked = true, ' ', false
		return n
	}
	cl.midLine = true
	if cl.atWordStart() {
		if cl.opt.spell && !cl.checked && isAlnumRune(r) {
			k, ok := cl.link(b, final)
			if !ok {
				return 0
			}
			if k > 0 {
				return k
			}
			cl.checked = true
		}
		if cl.opt.lists && isDigitRune(r) {
			k, ok := cl.inlineItem(b, final)
			if !ok {
				return 0
			}
			if k > 0 {
				return k
			}
		}
	}
	switch r {
	case '`':
		j := cl.run(b, '`')
		if j == len(b) && !final {
			return 0
		}
		if j >= 3 {
			cl.mode, cl.ticks = cleanFence, 0
			cl.space, cl.prev = true, ' '
		} else {
			cl.prev = '`' // inline code: the words stay
		}
		return j
	case '{', '[':
		// Only what looks like JSON ({"…", {}, [{, [[, [") is a blob: a lone brace in prose
		// must not swallow the rest of the answer, and a bracketed word is read.
		next, ok := cl.peekBlank(b, final)
		if !ok {
			return 0
		}
		if strings.IndexByte(blobStarts[b[0]], next) >= 0 {
			cl.openBlob()
			return 1
		}
		cl.prev = rune(b[0]) // the bracket goes; the words after it stay
		return 1
	case '}':
		return 1 // the other half of a lone brace: not read aloud
	case ']':
		if len(b) < 2 && !final {
			return 0
		}
		if len(b) >= 2 && b[1] == '(' {
			cl.mode, cl.depth = cleanTarget, 1
			return 2
		}
		cl.prev = ']'
		return 1
	case '!':
		if len(b) < 2 && !final {
			return 0
		}
		if len(b) >= 2 && b[1] == '[' {
			cl.mode = cleanAlt
			return 2
		}
		cl.writeByte('!')
		return 1
	case '*', '_', '~':
		j := cl.run(b, byte(r))
		if j == len(b) && !final {
			return 0
		}
		var next rune // 0: the end of the text
		if j < len(b) {
			if !final && !utf8.FullRune(b[j:]) {
				return 0
			}
			next, _ = utf8.DecodeRune(b[j:])
		}
		if cl.literal(byte(r), j, next) {
			if !cl.opt.symbols || r == '_' && !isBreakRune(next) {
				cl.writeBytes(b[:j])
			} else if w := cl.symbolWord(byte(r), next); w != "" {
				cl.writeWord(w)
			} else {
				cl.space = true // dropped: "a ~ b", a footnote's *
			}
		}
		cl.prev = r
		return j
	}
	if cl.opt.symbols || cl.opt.lists {
		if k, ok, done := cl.symbol(r, n, b, final); done {
			if !ok {
				return 0
			}
			return k
		}
	}
	if drop, brk := unspoken(r); drop {
		if brk {
			cl.space, cl.prev = true, ' '
		}
		return n
	}
	cl.writeBytes(b[:n])
	cl.prev = r
	return n
}

// atWordStart reports whether the next rune starts a word.
func (cl *cleaner) atWordStart() bool { return cl.prev == ' ' || cl.prev == 0 || cl.prev == '(' }

// wordStep reports whether the plain byte ch must go through step: a word that may be a link
// to spell, or a number that may be an inline list's.
func (cl *cleaner) wordStep(ch byte) bool {
	if !cl.atWordStart() {
		return false
	}
	return cl.opt.spell && !cl.checked || cl.opt.lists && ch >= '0' && ch <= '9'
}

// newline ends a line: after a list item, a heading or a table row, or as a blank line, it
// is a phrase break; in running text it is a space.
func (cl *cleaner) newline() {
	cl.space, cl.prev, cl.midLine, cl.checked = true, ' ', false, false
	if cl.opt.lists {
		switch {
		case cl.block:
			cl.breakDue()
		case cl.nl > 0 && !cl.brk:
			cl.brk, cl.soft = true, true
		}
		if cl.nl > 0 {
			cl.item = 0 // a new paragraph numbers its list afresh
		}
		cl.nl++
	}
	cl.block, cl.table, cl.cells = false, false, false
}

// breakDue makes the separator before the next rune a phrase break.
func (cl *cleaner) breakDue() {
	cl.space, cl.brk, cl.soft, cl.itemBrk = true, true, false, false
}

// itemDue makes the separator before the next rune the break before a list item.
func (cl *cleaner) itemDue() {
	cl.breakDue()
	cl.itemBrk = true
}

// marker handles a block marker at a line start.
func (cl *cleaner) marker(kind int, m []byte) {
	if !cl.opt.lists {
		return
	}
	switch kind {
	case markerItem, markerNumber:
		cl.block = true
		cl.itemDue()
		if kind == markerNumber {
			cl.item = 0
			for _, ch := range m[:len(m)-1] {
				cl.item = cl.item*10 + int(ch-'0')
			}
		} else {
			cl.item++
		}
		cl.ordinal()
	case markerHeading:
		cl.block = true
		cl.breakDue()
	case markerRule:
		cl.breakDue()
	}
}

// ordinal speaks the list item's ordinal, when the agent wants them.
func (cl *cleaner) ordinal() {
	if !cl.opt.ordinals || cl.item <= 0 {
		return
	}
	l := cl.opt.lang()
	w := l.next
	if cl.item <= len(l.ordinals) {
		w = l.ordinals[cl.item-1]
	}
	cl.writeWord(w)
	cl.writeByte(',')
	cl.space = true
}

// writeWord writes a word of the shaper's own, with a break before it and one due after it.
func (cl *cleaner) writeWord(w string) {
	cl.space = true
	for i, part := range strings.Fields(w) {
		if i > 0 {
			cl.space = true
		}
		cl.writeString(part)
	}
	cl.space, cl.prev = true, ' '
}

func (cl *cleaner) writeString(s string) {
	cl.sep(rune(s[0]))
	cl.out = append(cl.out, s...)
	cl.wrote = true
}

// inlineItem recognises a list number inside a line, "options: 1. Basic … 2. Deep", and
// reports how many bytes it is (0 when it is not one). The first item follows a colon or a
// sentence's end, each next one carries the next number after anything but a letter.
func (cl *cleaner) inlineItem(b []byte, final bool) (int, bool) {
	j := 0
	for j < len(b) && j < 3 && isDigitByte(b[j]) {
		j++
	}
	switch {
	case j == len(b), j+1 == len(b), j+2 == len(b):
		if !final {
			return 0, false
		}
		return 0, true
	case j > 2, b[j] != '.' && b[j] != ')', b[j+1] != ' ', isDigitByte(b[j+2]), isBlankByte(b[j+2]):
		return 0, true
	}
	num := 0
	for _, ch := range b[:j] {
		num = num*10 + int(ch-'0')
	}
	if num != cl.item+1 {
		return 0, true
	}
	last, _ := utf8.DecodeLastRune(cl.out)
	if num == 1 && cl.wrote && !strings.ContainsRune(":.!?", last) || num > 1 && unicode.IsLetter(last) {
		return 0, true
	}
	cl.item = num
	cl.itemDue()
	cl.ordinal()
	return j + 1, true
}

func isDigitByte(ch byte) bool { return ch >= '0' && ch <= '9' }

// link spells the e-mail or web address at the start of b, once the word is whole, and
// reports how many bytes it took (0 when the word is no link).
func (cl *cleaner) link(b []byte, final bool) (int, bool) {
	const maxLink = 256
	k := cl.seen
	for k < len(b) && k < maxLink && !isBlankByte(b[k]) {
		k++
	}
	if k == len(b) && !final {
		cl.seen = k
		return 0, false
	}
	cl.seen = 0
	w := b[:k]
	if k == maxLink || bytes.IndexAny(w, ".@:") < 0 || !utf8.Valid(w) || bytes.ContainsRune(w, utf8.RuneError) {
		return 0, true
	}
	core := bytes.TrimRightFunc(w, func(r rune) bool { return strings.ContainsRune(".,;:!?)]\"'”’»*_", r) })
	if bytes.ContainsFunc(core, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(".@/-_:?#=&%+~", r)
	}) {
		return 0, true // not an address: "a🎉.com", "**x.com**"
	}
	email, url := linkKind(string(core))
	if !email && !url {
		return 0, true
	}
	for _, part := range spellLink(cl.opt.lang(), string(core)) {
		cl.space = true
		cl.writeString(part)
	}
	cl.prev = 'a'
	return len(core), true
}

// symbol shapes a symbol a voice would read literally or stumble over, and reports whether
// it did (done), how many bytes it took, and ok false when it must see more first.
func (cl *cleaner) symbol(r rune, n int, b []byte, final bool) (k int, ok, done bool) {
	sym := cl.opt.symbols
	switch {
	case r == '•' || r == '‣':
		if !cl.opt.lists {
			return 0, true, false
		}
		cl.item++
		cl.block = true
		cl.itemDue()
		cl.ordinal()
		return n, true, true
	case r == '|':
		return cl.pipe(b, final)
	case !sym:
		return 0, true, false
	case r == '-' || r == '–' || r == '—':
		return cl.dash(r, n, b, final)
	case r == '#' || r == '>' || r == '<' || r == '≈' || r == '≥' || r == '≤':
		next, ok := cl.peekAfter(b, n, final)
		if !ok {
			return 0, false, true
		}
		l := cl.opt.lang()
		w := ""
		switch {
		case r == '≈':
			w = l.about
		case !isDigitRune(rune(next)):
		case r == '#':
			w = l.number
		case r == '>' || r == '≥':
			w = l.more
		default:
			w = l.less
		}
		if w != "" {
			cl.writeWord(w)
		}
		if r == '#' && w == "" {
			cl.prev = '#' // a hashtag's mark goes, its word stays
		} else {
			cl.space, cl.prev = true, ' '
		}
		return n, true, true
	case r == '(':
		cl.paren++
		return 0, true, false
	case r == ')':
		if cl.paren == 0 {
			cl.prev = ')' // a stray bracket: dropped
			return n, true, true
		}
		cl.paren--
		return 0, true, false
	}
	return 0, true, false
}

// peekAfter returns the first byte after b[:n] that is not blank, 0 at the end of the final
// input; ok is false when more must come first.
func (cl *cleaner) peekAfter(b []byte, n int, final bool) (byte, bool) {
	k := max(n, cl.seen)
	for k < len(b) && isBlankByte(b[k]) && k < n+16 {
		k++
	}
	if k == len(b) {
		cl.seen = k
		return 0, final
	}
	return b[k], true
}

// pipe handles "|": in a table row it separates cells (a comma between two cells with words;
// an empty cell or the dashes of the header rule are dropped); elsewhere it is dropped.
func (cl *cleaner) pipe(b []byte, final bool) (int, bool, bool) {
	if !cl.table {
		if !cl.opt.symbols {
			return 0, true, false
		}
		cl.space, cl.prev = true, ' '
		return 1, true, true
	}
	const maxCell = 256
	k := max(1, cl.seen)
	for k < len(b) && k < maxCell && b[k] != '|' && b[k] != '\n' {
		k++
	}
	if k == len(b) && !final {
		cl.seen = k
		return 0, false, true
	}
	cl.space, cl.prev = true, ' '
	if len(bytes.Trim(b[1:k], " \t\r-:")) == 0 {
		return k, true, true // an empty cell, or the rule under the header
	}
	if cl.cells {
		cl.writeByte(',')
		cl.space, cl.prev = true, ' '
	}
	cl.cells = true
	return 1, true, true
}

// dash shapes a dash: between two numbers, times or days a range ("9 a.m. - 5 p.m." → "9
// a.m. to 5 p.m."), as a separator a comma ("Basic cleaning - $89.99" → "Basic cleaning,
// $89.99"); a hyphen inside a word or number, or before one ("-5"), stays.
func (cl *cleaner) dash(r rune, n int, b []byte, final bool) (int, bool, bool) {
	spaced := cl.prev == ' ' || cl.prev == 0
	j := n
	if r == '-' {
		// Not cl.run: peekAfter below keeps its own place in seen. A run is measured again
		// on each attempt, so it is capped: a longer one is several separators.
		for j < len(b) && b[j] == '-' && j < maxDashes {
			j++
		}
		if j == len(b) && !final {
			return 0, false, true
		}
		if j == 1 {
			var next byte
			if j < len(b) {
				next = b[j]
			}
			switch {
			case !spaced && next == '$' && isDigitRune(lastRune(cl.out)):
				// "$50-$80": a range of prices
			case !spaced, next != 0 && !isBlankByte(next):
				return 0, true, false // a hyphen: well-known, 555-0123, -5
			}
		}
	}
	cl.seen = 0
	next, ok := cl.peekAfter(b, j, final)
	if !ok {
		return 0, false, true
	}
	nextSpaced := j < len(b) && isBlankByte(b[j])
	if cl.rangeBefore() && (isDigitByte(next) || next == '$' || next >= 0x80 && !spaced && !nextSpaced || cl.dayBefore() && next >= 'A' && next <= 'Z') ||
		r == '–' && !spaced && !nextSpaced && isAlnumRune(lastRune(cl.out)) && next != 0 {
		cl.writeWord(cl.opt.lang().to)
		return j, true, true
	}
	if m := markOf(lastRune(cl.out)); cl.wrote && m != markTerm && m != markClause && m != markWide && m != markWideCl {
		cl.space = false
		cl.writeByte(',')
	}
	cl.space, cl.prev = true, ' '
	return j, true, true
}

// maxDashes caps a run of dashes read as one separator.
const maxDashes = 16

// rangeBefore reports whether the text written ends in what a range starts with: a number, a
// time or a day.
func (cl *cleaner) rangeBefore() bool {
	r := lastRune(cl.out)
	if isDigitRune(r) || r == '%' {
		return true
	}
	w := lastWord(cl.out)
	switch strings.ToLower(strings.TrimRight(string(w), ".")) {
	case "a.m", "p.m", "am", "pm":
		return true
	}
	return cl.dayBefore()
}

// dayBefore reports whether the last word written is a weekday or a month.
func (cl *cleaner) dayBefore() bool {
	w := bytes.TrimRight(lastWord(cl.out), ".")
	return abbrevIn(cl.opt.langs, w)&(abbrDay|abbrMonth) != 0
}

func lastRune(b []byte) rune {
	r, _ := utf8.DecodeLastRune(b)
	return r
}

func lastWord(b []byte) []byte {
	i := bytes.LastIndexAny(b, " \n")
	return b[i+1:]
}

// symbolWord is what a literal ~ or * says before next ("~2" → about 2, "5*3" → 5 times 3);
// "" drops it.
func (cl *cleaner) symbolWord(ch byte, next rune) string {
	switch {
	case ch == '~' && isDigitRune(next):
		return cl.opt.lang().about
	case ch == '*' && isDigitRune(lastRune(cl.out)) && (isDigitRune(next) || next == ' '):
		return cl.opt.lang().times
	}
	return ""
}

// literal reports whether a run of n emphasis characters ch, between the runes prev and next,
// is text rather than markup.
func (cl *cleaner) literal(ch byte, n int, next rune) bool {
	prev := cl.prev
	if isBreakRune(prev) && isBreakRune(next) {
		return true // "5 * 3", "a ~ b"
	}
	switch ch {
	case '~':
		return n == 1 // "~5 minutes"; only "~~" strikes through
	case '_':
		return isAlnumRune(prev) && isAlnumRune(next) // first_name
	case '*':
		return isDigitRune(prev) && isDigitRune(next) // 5*3
	}
	return false
}

func (cl *cleaner) openBlob() {
	cl.mode, cl.depth, cl.inStr, cl.esc = cleanBlob, 1, false, false
}

// skipFence drops fenced code up to and including the closing ```.
func (cl *cleaner) skipFence(b []byte) int {
	i := 0
	if cl.ticks == 0 {
		i = bytes.IndexByte(b, '`')
		if i < 0 {
			return len(b)
		}
	}
	for ; i < len(b); i++ {
		if b[i] != '`' {
			cl.ticks = 0
			continue
		}
		cl.ticks++
		if cl.ticks == 3 {
			cl.mode, cl.ticks = cleanText, 0
			cl.space, cl.prev, cl.midLine = true, ' ', true
			return i + 1
		}
	}
	return len(b)
}

// skipBlob drops a JSON object or array up to its closing bracket, ignoring brackets inside
// strings. Braces and brackets count alike, so a malformed blob still ends.
func (cl *cleaner) skipBlob(b []byte) int {
	for i, ch := range b {
		switch {
		case cl.esc:
			cl.esc = false
		case cl.inStr:
			if ch == '\\' {
				cl.esc = true
			} else if ch == '"' {
				cl.inStr = false
			}
		case ch == '"':
			cl.inStr = true
		case ch == '{' || ch == '[':
			cl.depth++
		case ch == '}' || ch == ']':
			cl.depth--
			if cl.depth == 0 {
				cl.mode = cleanText
				cl.space, cl.prev, cl.midLine = true, ' ', true
				return i + 1
			}
		}
	}
	return len(b)
}

// skipTarget drops a link's (url), with nested parentheses; a newline ends it regardless.
func (cl *cleaner) skipTarget(b []byte) int {
	for i, ch := range b {
		switch ch {
		case '(':
			cl.depth++
		case ')':
			cl.depth--
			if cl.depth == 0 {
				cl.mode, cl.prev = cleanText, ')'
				return i + 1
			}
		case '\n':
			cl.mode = cleanText
			cl.space, cl.prev, cl.midLine = true, ' ', false
			return i + 1
		}
	}
	return len(b)
}

func (cl *cleaner) writeByte(ch byte) {
	cl.sep(rune(ch))
	cl.out = append(cl.out, ch)
	cl.wrote = true
	cl.prev = rune(ch)
}

func (cl *cleaner) writeBytes(p []byte) {
	r, _ := utf8.DecodeRune(p)
	cl.sep(r)
	cl.out = append(cl.out, p...)
	cl.wrote = true
}

// sep writes the separator due before the rune r: a space, or a phrase break ('\n') after a
// full stop when the phrase before it ends without a mark; none before punctuation a dropped
// emoji left a space before ("booked 👍." is read "booked.").
//
// A list item of one word does not end a phrase: the next item follows it after a comma, so
// "- Monday\n- Wednesday\n- Friday" is said "Monday, Wednesday, Friday."
func (cl *cleaner) sep(r rune) {
	cl.nl = 0
	if cl.space {
		brk, item := cl.brk, cl.itemBrk
		cl.space, cl.brk, cl.itemBrk = false, false, false
		m := markOf(lastRune(cl.out))
		mark := m != markNone && m != markHyphen
		switch {
		case !cl.wrote || tightPunct(r):
		case !brk || cl.soft && unicode.IsLower(r):
			cl.out = append(cl.out, ' ')
			cl.inWord = false
		case item && cl.words == 1:
			if !mark {
				cl.out = append(cl.out, ',')
			}
			cl.out = append(cl.out, ' ')
			cl.inWord, cl.words = false, 0
		default:
			if !mark {
				cl.out = append(cl.out, '.')
			}
			cl.out = append(cl.out, '\n')
			cl.inWord, cl.words = false, 0
		}
	}
	if !cl.inWord && (isAlnumRune(r) || r >= 0x2e80 && isIdeograph(r)) {
		cl.words++
		cl.inWord = r < 0x2e80 || !isIdeograph(r)
	}
}

// tightPunct reports whether r takes no space before it, where a dropped emoji or blob left
// one: "booked 👍." is read "booked.".
func tightPunct(r rune) bool {
	switch r {
	case '.', ',', ';', ':', '!', '?', '…':
		return true
	}
	return false
}

// Block markers at a line start.
const (
	markerNone = iota
	markerHeading
	markerQuote
	markerItem   // a bullet
	markerNumber // a list number: "3." or "3)"
	markerRule
)

// lineMarker reports how many bytes at the start of a line are a block marker, and which: a
// heading's #s, a bullet, a list number, a quote's > or a rule. Every marker but the quote
// must be followed by a blank, so "-5 degrees", "#1" and "3.30" stay. ok is false when b is
// too short to tell.
func (cl *cleaner) lineMarker(b []byte, final bool) (n, kind int, ok bool) {
	ch := b[0]
	switch {
	case ch == '#':
		j := 0
		for j < len(b) && j < 7 && b[j] == '#' {
			j++
		}
		if j == len(b) {
			return 0, markerNone, final
		}
		if j <= 6 && isBlankByte(b[j]) {
			return j, markerHeading, true
		}
	case ch == '>':
		return 1, markerQuote, true
	case ch == '-' || ch == '*' || ch == '+' || ch == '_':
		j := cl.run(b, ch)
		rule := j >= 3 && ch != '+'
		if j == len(b) {
			if !final {
				return 0, markerNone, false
			}
			if rule {
				return j, markerRule, true
			}
			return 0, markerNone, true
		}
		if rule && isBlankByte(b[j]) {
			return j, markerRule, true
		}
		if j == 1 && ch != '_' && isBlankByte(b[j]) {
			return 1, markerItem, true
		}
	case ch >= '0' && ch <= '9':
		j := 0
		for j < len(b) && j < 4 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == len(b) {
			return 0, markerNone, final
		}
		if j <= 3 && (b[j] == '.' || b[j] == ')') {
			if j+1 == len(b) {
				return 0, markerNone, final
			}
			if isBlankByte(b[j+1]) {
				return j + 1, markerNumber, true
			}
		}
	}
	return 0, markerNone, true
}

// unspoken reports whether r is dropped, and whether it then stands for a word break (an
// emoji between two words keeps them apart; a variation selector glued to one does not).
func unspoken(r rune) (drop, brk bool) {
	switch {
	case r < utf8.RuneSelf:
		return r < ' ' || r == 0x7f, false
	case r == utf8.RuneError, r < 0xa0: // invalid bytes, C1 controls
		return true, false
	case r == 0xb0, r == 0x2103, r == 0x2109, r == 0x2116: // ° ℃ ℉ №: a voice reads them
		return false, false
	case r == 0x200b, r == 0x2022, r == 0x2023, r == 0x2043: // zero-width space, bullets
		return true, true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef, r == 0x20e3: // variation selectors, keycap
		return true, false
	case r >= 0x1f000 && r <= 0x1fbff, // emoji, pictographs, flags, skin tones
		r >= 0x2190 && r <= 0x21ff, // arrows
		r >= 0x2300 && r <= 0x23ff, // technical symbols (⌚ ⏰)
		r >= 0x2500 && r <= 0x27bf, // box drawing, shapes, symbols (☀ ★ ✅), dingbats
		r >= 0x2900 && r <= 0x297f, // more arrows
		r >= 0x2b00 && r <= 0x2bff: // arrows and stars (⭐ ⬆)
		return true, true
	case unicode.Is(unicode.Cf, r): // joiners, direction marks, soft hyphen, tags
		return true, false
	case unicode.In(r, unicode.So, unicode.Co): // other symbols (© ™ ♻), private use
		return true, true
	}
	return false, false
}

// run measures the run of ch at the start of b. A run that reaches the end of b makes the
// step wait, and the next attempt goes on from where this one stopped, so a long run arriving
// byte by byte costs linear time.
func (cl *cleaner) run(b []byte, ch byte) int {
	j := min(cl.seen, len(b))
	for j < len(b) && b[j] == ch {
		j++
	}
	cl.seen = j
	return j
}

func isBlankByte(ch byte) bool { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' }

// isBreakRune reports whether r (0 for the start or end of the text) separates words.
func isBreakRune(r rune) bool { return r == 0 || unicode.IsSpace(r) }

func isDigitRune(r rune) bool { return r >= '0' && r <= '9' }

func isAlnumRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}
