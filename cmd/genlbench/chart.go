//go:build linux

package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"sort"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var palette = map[string]color.RGBA{
	"raw":          {0x44, 0x44, 0x44, 0xff},
	"bridge-batch": {0x1f, 0x77, 0xb4, 0xff},
	"bridge-event": {0x2c, 0xa0, 0x2c, 0xff},
	"bridge-ynl":   {0x17, 0xbe, 0xcf, 0xff},
	"bridge-js":    {0x94, 0x67, 0xbd, 0xff},
	"naive":        {0xd6, 0x27, 0x28, 0xff},
	"js-bare":      {0xff, 0x7f, 0x0e, 0xff},
}

type canvas struct{ img *image.RGBA }

func (c canvas) text(x, y int, s string, col color.Color) {
	d := font.Drawer{Dst: c.img, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func (c canvas) line(x0, y0, x1, y1 int, col color.Color, width int) {
	dx, dy := float64(x1-x0), float64(y1-y0)
	n := int(math.Max(math.Abs(dx), math.Abs(dy))) + 1
	for i := 0; i <= n; i++ {
		x := x0 + int(dx*float64(i)/float64(n))
		y := y0 + int(dy*float64(i)/float64(n))
		c.rect(x-width/2, y-width/2, x+width/2+1, y+width/2+1, col)
	}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	draw.Draw(c.img, image.Rect(x0, y0, x1, y1), image.NewUniform(col), image.Point{}, draw.Src)
}

// drawChart draws delivered throughput against offered rate (left) and the
// latency quantiles at the lowest offered rate (right).
func drawChart(r *results, path string) error {
	const W, H = 1200, 520
	c := canvas{image.NewRGBA(image.Rect(0, 0, W, H))}
	c.rect(0, 0, W, H, color.White)
	black, grey := color.RGBA{0, 0, 0, 255}, color.RGBA{0xdd, 0xdd, 0xdd, 255}
	c.text(20, 20, "genlbench: "+r.Machine, black)

	// Left: throughput vs offered. Offered "max" is drawn at the right end.
	var rates []int
	seen := map[int]bool{}
	maxY := 1.0
	for _, s := range r.Summary {
		if s.Mode == "js-bare" {
			continue
		}
		if !seen[s.Offered] {
			seen[s.Offered] = true
			rates = append(rates, s.Offered)
		}
		maxY = math.Max(maxY, s.MaxEPS)
	}
	sort.Slice(rates, func(i, j int) bool {
		if rates[i] == 0 || rates[j] == 0 {
			return rates[j] == 0 && rates[i] != 0
		}
		return rates[i] < rates[j]
	})
	x0, y0, x1, y1 := 80, 60, 600, 460
	c.text(x0, y0-10, "delivered events/s vs offered rate (median, bar = min-max)", black)
	for i := 0; i <= 5; i++ {
		y := y1 - (y1-y0)*i/5
		c.line(x0, y, x1, y, grey, 1)
		c.text(10, y+4, fmt.Sprintf("%6.0fk", maxY*float64(i)/5/1000), black)
	}
	xs := func(i int) int { return x0 + 30 + (x1-x0-60)*i/max(1, len(rates)-1) }
	for i, rt := range rates {
		c.text(xs(i)-20, y1+20, rateName(rt), black)
	}
	ys := func(v float64) int { return y1 - int(float64(y1-y0)*v/maxY) }
	legend := 0
	for _, mode := range []string{"raw", "bridge-batch", "bridge-event", "bridge-ynl", "bridge-js", "naive"} {
		col, ok := palette[mode]
		if !ok {
			continue
		}
		px, py := -1, -1
		any := false
		for i, rt := range rates {
			for _, s := range r.Summary {
				if s.Mode != mode || s.Offered != rt {
					continue
				}
				any = true
				x, y := xs(i), ys(s.EventsPerSec)
				c.line(x, ys(s.MinEPS), x, ys(s.MaxEPS), col, 1)
				c.rect(x-3, y-3, x+4, y+4, col)
				if px >= 0 {
					c.line(px, py, x, y, col, 2)
				}
				px, py = x, y
			}
		}
		if any {
			c.rect(x0+10, y0+10+legend*16, x0+22, y0+20+legend*16, col)
			c.text(x0+28, y0+20+legend*16, mode, black)
			legend++
		}
	}

	// Right: latency quantiles at the lowest offered rate, log scale.
	low := -1
	for _, rt := range rates {
		if rt > 0 && (low < 0 || rt < low) {
			low = rt
		}
	}
	lx0, lx1 := 680, 1180
	c.text(lx0, y0-10, fmt.Sprintf("latency kernel timestamp -> subscriber at %s (log scale)", rateName(low)), black)
	var bars []summary
	for _, s := range r.Summary {
		if s.Offered == low && s.P50us > 0 {
			bars = append(bars, s)
		}
	}
	lmin, lmax := 1.0, 1e6
	ly := func(us float64) int {
		us = math.Min(math.Max(us, lmin), lmax)
		return y1 - int(float64(y1-y0)*math.Log10(us/lmin)/math.Log10(lmax/lmin))
	}
	for _, us := range []float64{1, 10, 100, 1000, 10000, 100000, 1000000} {
		y := ly(us)
		c.line(lx0, y, lx1, y, grey, 1)
		label := fmt.Sprintf("%gus", us)
		if us >= 1000 {
			label = fmt.Sprintf("%gms", us/1000)
		}
		c.text(lx0-50, y+4, label, black)
	}
	if len(bars) > 0 {
		slot := (lx1 - lx0) / len(bars)
		for i, s := range bars {
			col := palette[s.Mode]
			bx := lx0 + i*slot + 10
			for j, q := range []float64{s.P50us, s.P99us, s.P999us} {
				// Lighter for the higher quantiles: blend toward white.
				lighten := func(c uint8) uint8 { return c + uint8(int(255-c)*j*30/100) }
				shade := color.RGBA{lighten(col.R), lighten(col.G), lighten(col.B), 255}
				w := (slot - 30) / 3
				c.rect(bx+j*w, ly(q), bx+(j+1)*w-2, y1, shade)
			}
			c.text(bx, y1+20, s.Mode, black)
			c.text(bx, y1+34, "p50 p99 p99.9", black)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, c.img)
}
