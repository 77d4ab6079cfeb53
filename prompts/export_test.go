package prompts

// OnWatching sets a function Watch calls once it is watching, so tests change files only after.
func OnWatching(lv *Live, f func()) { lv.watching = f }
