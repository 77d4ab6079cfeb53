package agent

import (
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Speech languages: what the shaper knows of each language an agent declares. A language adds
// the abbreviations whose full stop never ends a phrase, the weekday and month names that keep
// a date in one phrase, and the words the shaper speaks for symbols, list ordinals and links.
// The first declared language speaks; every declared language's abbreviations count.

// Abbreviation flags, by the lower-case word before the final full stop.
const (
	abbrNever  = 1 << iota // its full stop never ends a phrase: Dr. Prof. approx. vs.
	abbrCapNev             // never ends a phrase when written with a capital
	abbrNumber             // "No." before a number
	abbrClock              // a.m., p.m.
	abbrDay                // a weekday: its full stop goes on before a date ("Tue. Dec. 3"), as a.m./p.m. do before it; its comma too ("Tue., Dec. 3rd")
	abbrMonth              // a month: its full stop goes on before a number ("Dec. 3rd"); it follows a weekday's comma, or a German "3."
	abbrZone               // a time zone: after a.m./p.m. it goes on
	abbrStreet             // a street type: its full stop goes on before a number, a suite or a compass point
	abbrUnit               // a unit: its full stop goes on before a number ("5 ft. 2 in.")
)

// streetNext are the words after a street type's full stop that keep the address whole.
var streetNext = map[string]bool{
	"suite": true, "ste": true, "apt": true, "unit": true, "floor": true, "fl": true, "bldg": true,
	"n": true, "s": true, "e": true, "w": true, "nw": true, "ne": true, "sw": true, "se": true,
}

// language is one declared speech language.
type language struct {
	abbrevs map[string]int
	// suffixes are word endings that make an abbreviation: German "Hauptstr."
	suffixes []string
	// ordinalDots: "3. Dezember" is a date, not a sentence end.
	ordinalDots bool
	// Words spoken for symbols: "~2" → about 2, "9–5" → 9 to 5, "#3" → number 3, "2 * 3" →
	// 2 times 3, "> 5" → more than 5, "< 5" → less than 5.
	about, to, number, times, more, less string
	// ordinals for list items 1 to 10; later items are introduced by next.
	ordinals []string
	next     string
	// Link words: example dot com slash book, jane at example dot com.
	dot, at, slash, dash, underscore string
}

// abbr adds words with flags to m.
func abbr(m map[string]int, flags int, words string) {
	for _, w := range strings.Fields(words) {
		m[w] |= flags
	}
}

func newLanguage(l language, build func(m map[string]int)) *language {
	l.abbrevs = make(map[string]int)
	build(l.abbrevs)
	return &l
}

// speechLanguages are the languages an agent may declare in speech.languages.
var speechLanguages = map[string]*language{
	"en": newLanguage(language{
		about: "about", to: "to", number: "number", times: "times", more: "more than", less: "less than",
		ordinals: []string{"First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth", "Tenth"},
		next:     "Next",
		dot:      "dot", at: "at", slash: "slash", dash: "dash", underscore: "underscore",
	}, func(m map[string]int) {
		abbr(m, abbrNever, "dr mr mrs ms mx prof rev hon capt lt sgt st mt gen col maj sr jr vs approx e.g i.e cf viz")
		abbr(m, abbrStreet, "ave blvd rd ln hwy pkwy ter cir hts jct pl sq ct")
		abbr(m, abbrUnit, "min mins hr hrs sec secs ft in lb lbs oz qt gal mi yd yds yr yrs wk wks mo mos")
		abbr(m, abbrMonth, "jan feb apr jun jul aug sep sept oct nov dec")
		abbr(m, abbrMonth, "mar")
		abbr(m, abbrMonth, "january february march april may june july august september october november december")
		abbr(m, abbrDay, "mon tue tues thu thur thurs fri")
		abbr(m, abbrDay, "wed sat sun")
		abbr(m, abbrDay, "monday tuesday wednesday thursday friday saturday sunday")
		abbr(m, abbrNumber, "no")
		abbr(m, abbrClock, "a.m p.m")
		abbr(m, abbrZone, "et ct pt est edt cst cdt mst mdt pst pdt gmt utc bst cet") // "mt" is Mt., a title
	}),
	"es": newLanguage(language{
		about: "unos", to: "a", number: "número", times: "por", more: "más de", less: "menos de",
		ordinals: []string{"Primero", "Segundo", "Tercero", "Cuarto", "Quinto", "Sexto", "Séptimo", "Octavo", "Noveno", "Décimo"},
		next:     "Después",
		dot:      "punto", at: "arroba", slash: "barra", dash: "guion", underscore: "guion bajo",
	}, func(m map[string]int) {
		abbr(m, abbrNever, "sr sra srta dr dra lic ing ud uds núm pág aprox tel dpto depto prov")
		abbr(m, abbrUnit, "min seg hrs")
		abbr(m, abbrNever, "av avda pza c") // before the name: Av. Reforma
		abbr(m, abbrMonth, "ene feb abr jun jul ago sept oct nov dic")
		abbr(m, abbrMonth, "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre")
		abbr(m, abbrDay, "lun mié jue vie sáb dom")
		abbr(m, abbrDay, "lunes martes miércoles jueves viernes sábado domingo")
		abbr(m, abbrClock, "a.m p.m")
	}),
	"de": newLanguage(language{
		ordinalDots: true,
		suffixes:    []string{"str"},
		about:       "etwa", to: "bis", number: "Nummer", times: "mal", more: "mehr als", less: "weniger als",
		ordinals: []string{"Erstens", "Zweitens", "Drittens", "Viertens", "Fünftens", "Sechstens", "Siebtens", "Achtens", "Neuntens", "Zehntens"},
		next:     "Dann",
		dot:      "Punkt", at: "at", slash: "Schrägstrich", dash: "Bindestrich", underscore: "Unterstrich",
	}, func(m map[string]int) {
		abbr(m, abbrNever, "hr fr dr prof nr tel bzw usw ca inkl zzgl evtl ggf vgl z.b d.h u.a s.o")
		abbr(m, abbrUnit, "min std sek")
		abbr(m, abbrStreet, "str")
		abbr(m, abbrMonth, "jan feb mär apr jun jul aug sept okt nov dez")
		abbr(m, abbrMonth, "januar februar märz april mai juni juli august september oktober november dezember")
		abbr(m, abbrDay, "mo di mi do sa")
		abbr(m, abbrDay, "so")
		abbr(m, abbrDay, "montag dienstag mittwoch donnerstag freitag samstag sonntag")
	}),
	"fr": newLanguage(language{
		about: "environ", to: "à", number: "numéro", times: "fois", more: "plus de", less: "moins de",
		ordinals: []string{"Premièrement", "Deuxièmement", "Troisièmement", "Quatrièmement", "Cinquièmement", "Sixièmement", "Septièmement", "Huitièmement", "Neuvièmement", "Dixièmement"},
		next:     "Ensuite",
		dot:      "point", at: "arobase", slash: "slash", dash: "tiret", underscore: "tiret bas",
	}, func(m map[string]int) {
		abbr(m, abbrNever, "mme mlle mm dr pr env tél p.ex")
		abbr(m, abbrNever, "av bd") // before the name: av. Foch
		abbr(m, abbrMonth, "janv févr avr juil sept oct nov déc")
		abbr(m, abbrMonth, "janvier février mars avril mai juin juillet août septembre octobre novembre décembre")
		abbr(m, abbrDay, "lun jeu ven sam dim")
		abbr(m, abbrDay, "mer")
		abbr(m, abbrDay, "lundi mardi mercredi jeudi vendredi samedi dimanche")
	}),
}

// SpeechLanguages lists the codes speech.languages accepts, sorted.
func SpeechLanguages() []string { return slices.Sorted(maps.Keys(speechLanguages)) }

// defaultLangs is English alone.
var defaultLangs = []*language{speechLanguages["en"]}

// langsOf resolves language codes; unknown codes are skipped (the agent loader rejects them).
func langsOf(codes []string) []*language {
	var out []*language
	for _, c := range codes {
		if l := speechLanguages[strings.ToLower(strings.TrimSpace(c))]; l != nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return defaultLangs
	}
	return out
}

// abbrevIn returns the flags of w (the word before a full stop, without it) in the languages,
// capital-only abbreviations resolved.
func abbrevIn(langs []*language, w []byte) int {
	var buf [16]byte
	if len(w) == 0 || len(w) > len(buf) {
		return 0
	}
	l := buf[:0]
	for len(w) > 0 {
		r, n := utf8.DecodeRune(w)
		if r < utf8.RuneSelf {
			if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
			l = append(l, byte(r))
		} else {
			l = utf8.AppendRune(l, unicode.ToLower(r))
		}
		if len(l) > len(buf) {
			return 0
		}
		w = w[n:]
	}
	flags := 0
	for _, lang := range langs {
		flags |= lang.abbrevs[string(l)]
		for _, suf := range lang.suffixes {
			if len(l) > len(suf)+2 && string(l[len(l)-len(suf):]) == suf {
				flags |= lang.abbrevs[suf]
			}
		}
	}
	return flags
}

// never reports whether a full stop after w, with those flags, never ends a phrase.
func never(flags int, w []byte) bool {
	if flags&abbrNever != 0 {
		return true
	}
	if flags&abbrCapNev != 0 {
		r, _ := utf8.DecodeRune(w)
		return unicode.IsUpper(r)
	}
	return false
}

// linkTLDs are the top-level domains that make "word.tld" a web address to spell.
var linkTLDs = map[string]bool{
	"com": true, "org": true, "net": true, "io": true, "co": true, "us": true, "uk": true, "de": true,
	"es": true, "fr": true, "eu": true, "info": true, "biz": true, "app": true, "dev": true, "ai": true,
	"me": true, "tv": true, "ca": true, "au": true, "edu": true, "gov": true, "health": true,
	"clinic": true, "shop": true, "store": true, "online": true, "site": true, "mx": true, "at": true, "ch": true,
}

// linkKind tells an e-mail address or a web address from any other word.
func linkKind(w string) (email, url bool) {
	if at := strings.IndexByte(w, '@'); at > 0 {
		host := w[at+1:]
		dot := strings.LastIndexByte(host, '.')
		return dot > 0 && dot < len(host)-2 && isLetters(host[dot+1:]), false
	}
	if strings.Contains(w, "://") || strings.HasPrefix(strings.ToLower(w), "www.") {
		return false, true
	}
	host := w
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	dot := strings.LastIndexByte(host, '.')
	if dot <= 0 || !isLetters(host[:1]) {
		return false, false
	}
	return false, linkTLDs[strings.ToLower(host[dot+1:])]
}

func isLetters(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return true
}

// spellLink returns the words a voice says for a link: "https://www.example.com/book?x=1" →
// "example dot com slash book"; "jane.doe@example.com" → "jane dot doe at example dot com".
func spellLink(l *language, w string) []string {
	if i := strings.Index(w, "://"); i >= 0 {
		w = w[i+3:]
	}
	if strings.HasPrefix(strings.ToLower(w), "www.") {
		w = w[4:]
	}
	if i := strings.IndexAny(w, "?#"); i >= 0 {
		w = w[:i]
	}
	w = strings.TrimRight(w, "/")
	var words []string
	start := 0
	for i := 0; i < len(w); i++ {
		var sep string
		switch w[i] {
		case '.':
			sep = l.dot
		case '@':
			sep = l.at
		case '/':
			sep = l.slash
		case '-':
			sep = l.dash
		case '_':
			sep = l.underscore
		default:
			continue
		}
		if i > start {
			words = append(words, w[start:i])
		}
		words = append(words, sep)
		start = i + 1
	}
	if start < len(w) {
		words = append(words, w[start:])
	}
	return words
}
