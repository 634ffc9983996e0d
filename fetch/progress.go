package fetch

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressUI shows the progress of the downloads of one FetchImage call.
// A terminal line can hold one bar, and downloads run at the same time, so
// one bar is drawn at a time: the others are drawn, caught up, when it is
// done. Off a terminal each download says a few whole lines.
type progressUI struct {
	mu     sync.Mutex
	w      io.Writer
	term   bool
	active *fileProgress   // the download whose bar is on screen
	queue  []*fileProgress // downloads waiting for the screen
}

func newProgressUI(w io.Writer, term bool) *progressUI {
	if w == nil {
		return nil
	}
	return &progressUI{w: w, term: term}
}

// fileProgress is the progress of one download. Its methods do nothing on
// a nil receiver, so a client without Progress needs no checks.
type fileProgress struct {
	ui      *progressUI
	name    string
	started bool
	total   int64 // -1 when unknown
	from    int64 // where this run's bytes start (a resumed download)
	done    int64
	begin   time.Time
	nextPct int64 // plain lines: the next quarter to report
	bar     *progressbar.ProgressBar
	ended   bool
	ok      bool
	silent  bool // plain lines: too small a file to report
}

func (ui *progressUI) file(name string) *fileProgress {
	if ui == nil {
		return nil
	}
	return &fileProgress{ui: ui, name: name, total: -1}
}

// start is called for each response; a response starting at zero after
// bytes were counted means the download started over.
func (p *fileProgress) start(total, at int64) {
	if p == nil {
		return
	}
	ui := p.ui
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if p.started {
		if at == 0 && p.done > 0 {
			p.done = 0
			p.from = 0
			p.total = total
			if p.bar != nil {
				p.bar.ChangeMax64(barMax(total))
				p.bar.Reset()
			}
			if !ui.term && !p.silent {
				fmt.Fprintf(ui.w, "%s: starting over\n", p.name)
				p.nextPct = 25
			}
		}
		return
	}
	p.started = true
	p.total, p.from, p.done, p.begin = total, at, at, time.Now()
	if !ui.term && total >= 0 && total < quarterLinesFrom {
		// A log gains nothing from lines about a file that arrives at
		// once (the meta tarball, a small test image).
		p.silent = true
		return
	}
	if !ui.term {
		switch {
		case at > 0 && total >= 0:
			fmt.Fprintf(ui.w, "%s: resuming at %s of %s\n", p.name, humanBytes(at), humanBytes(total))
		case at > 0:
			fmt.Fprintf(ui.w, "%s: resuming at %s\n", p.name, humanBytes(at))
		case total >= 0:
			fmt.Fprintf(ui.w, "%s: %s to download\n", p.name, humanBytes(total))
		default:
			fmt.Fprintf(ui.w, "%s: size unknown\n", p.name)
		}
		p.nextPct = 25
		for p.total > 0 && p.nextPct < 100 && p.done*100 >= p.total*p.nextPct {
			p.nextPct += 25
		}
		return
	}
	if ui.active == nil {
		ui.active = p
		p.draw()
	} else {
		ui.queue = append(ui.queue, p)
	}
}

func barMax(total int64) int64 {
	if total <= 0 {
		return -1
	}
	return total
}

// draw puts the bar on screen, caught up with the bytes so far. The bar
// counts only this run's bytes, so a resumed download shows its real speed.
func (p *fileProgress) draw() {
	ui := p.ui
	desc := p.name
	max := barMax(p.total)
	if p.from > 0 && p.total > 0 {
		desc = fmt.Sprintf("%s (resumed at %s)", p.name, humanBytes(p.from))
		max = p.total - p.from
	}
	p.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(ui.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSpinnerType(14),
		// No redraw goroutine: it outlives a bar that is abandoned.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(ui.w) }),
	)
	if n := p.done - p.from; n > 0 {
		p.bar.Add64(n)
	}
	if p.ended {
		p.bar.Finish()
	}
}

func (p *fileProgress) add(n int) {
	if p == nil {
		return
	}
	ui := p.ui
	ui.mu.Lock()
	defer ui.mu.Unlock()
	p.done += int64(n)
	if p.bar != nil {
		p.bar.Add(n)
		return
	}
	if !ui.term && p.total >= quarterLinesFrom && p.nextPct < 100 && p.done*100 >= p.total*p.nextPct {
		for p.nextPct < 100 && p.done*100 >= p.total*p.nextPct {
			p.nextPct += 25
		}
		fmt.Fprintf(ui.w, "%s: %d%% of %s, %s\n", p.name, p.done*100/p.total, humanBytes(p.total), p.rate())
	}
}

// quarterLinesFrom is the size from which plain progress says each
// quarter: smaller files arrive before anyone reads it.
const quarterLinesFrom = 1 << 20

// rate is this run's average speed.
func (p *fileProgress) rate() string {
	secs := time.Since(p.begin).Seconds()
	if secs <= 0 {
		return "- /s"
	}
	return humanBytes(int64(float64(p.done-p.from)/secs)) + "/s"
}

// finish ends the download's progress: a completed bar, or a last line.
// ok is false when the download failed.
func (p *fileProgress) finish(ok bool) {
	if p == nil {
		return
	}
	ui := p.ui
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if p.ended {
		return
	}
	p.ended, p.ok = true, ok
	if p.silent {
		return
	}
	if !ui.term {
		if ok && !p.started {
			fmt.Fprintf(ui.w, "%s: complete from an earlier download\n", p.name)
		} else if ok {
			fmt.Fprintf(ui.w, "%s: %s in %s (%s)\n", p.name, humanBytes(p.done),
				time.Since(p.begin).Round(100*time.Millisecond), p.rate())
		} else if p.started {
			fmt.Fprintf(ui.w, "%s: failed after %s\n", p.name, humanBytes(p.done))
		}
		return
	}
	if ui.active != p {
		return
	}
	if ok {
		p.bar.Finish()
	} else {
		p.bar.Exit()
	}
	ui.active = nil
	for len(ui.queue) > 0 && ui.active == nil {
		next := ui.queue[0]
		ui.queue = ui.queue[1:]
		if next.ended && !next.ok {
			continue
		}
		ui.active = next
		next.draw()
		if next.ended {
			ui.active = nil
		}
	}
}

// humanBytes is n in binary units, e.g. "12.3 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
