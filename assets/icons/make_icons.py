#!/usr/bin/env python3
"""Draw the navigator's state icons (product manual chapter 7, Tables 7-1 .. 7-5).

Every icon is drawn on a 128x128 canvas in a 32-unit coordinate grid (4x supersampling) and
downsampled with LANCZOS to a 32x32 RGBA PNG next to this script. The output is deterministic:
running the script again rewrites the same files.

    python3 assets/icons/make_icons.py

Only Pillow is needed (pip install pillow), and only to regenerate the icons; the PNGs are
committed and the application embeds them as they are.

Visual language (see README.md):
  * base shape says WHAT the row is: chassis (frame with vertical blades), HVM (two stacked
    server units), LPAR (a window), WWPN (a tag), migration WWPN (a blue tag with an arrow),
    execution status (a disc).
  * a badge in the bottom-right corner, cut out of the base with a transparent gap, says the
    STATE. Each badge has its own glyph/outline shape, so no state relies on colour alone:
      check  (green disc)        registered / done
      !      (red triangle)      last status update failed
      pin    (amber push pin)    needs manual recovery
      arrow  (blue disc)         being migrated
      bar    (red disc)          blocked
      slash  (grey ring)         not selectable (red ring: cannot be registered)
      undo   (amber disc)        WWNs being rolled back
      ?      (grey disc)         WWN state unknown
      tag    (blue tag)          accesses LUs with a migration WWPN
  A few states change the base itself: a dashed outline for a free LPAR number, a dark screen
  with a power symbol (off), a green screen with lines (on), a red screen with a cross
  (unrecoverable), hollow tags for unregistered WWPNs.
"""

import math
import os

from PIL import Image, ImageChops, ImageDraw, ImageFilter

S = 4  # supersampling factor
N = 32  # output size in pixels
OUT = os.path.dirname(os.path.abspath(__file__))

# Palette: mid-luminance fills that read on white and on egui's dark grey (#1b1b1b) alike,
# white glyphs on saturated fills, a dark glyph on amber.
SLATE = (106, 136, 168, 255)  # neutral body (HVM, LPAR, tag)
SLATE_DK = (64, 86, 110, 255)  # details on the body (vents, slots)
SCREEN = (214, 224, 234, 255)  # neutral LPAR screen
GREEN = (46, 158, 74, 255)
GREEN_LT = (120, 220, 140, 255)  # LEDs
RED = (214, 48, 39, 255)
AMBER = (242, 169, 0, 255)
BLUE = (31, 119, 208, 255)
GREY = (125, 132, 140, 255)
GREY_LT = (160, 167, 175, 255)
OFF = (58, 63, 69, 255)  # a dark (powered-off) screen
PURPLE = (140, 110, 232, 255)
WHITE = (255, 255, 255, 255)
DARK = (35, 39, 46, 255)


def new_layer():
    return Image.new("RGBA", (N * S, N * S), (0, 0, 0, 0))


def p(*xy):
    """Grid coordinates -> supersampled pixel coordinates."""
    return [v * S for v in xy]


class Pen:
    def __init__(self, layer):
        self.layer = layer
        self.d = ImageDraw.Draw(layer)

    def rrect(self, x0, y0, x1, y1, r, fill=None, outline=None, width=0):
        self.d.rounded_rectangle(p(x0, y0, x1, y1), radius=r * S, fill=fill,
                                 outline=outline, width=int(round(width * S)))

    def rect(self, x0, y0, x1, y1, fill):
        self.d.rectangle(p(x0, y0, x1, y1), fill=fill)

    def disc(self, cx, cy, r, fill=None, outline=None, width=0):
        self.d.ellipse(p(cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline,
                       width=int(round(width * S)))

    def poly(self, pts, fill):
        self.d.polygon([(x * S, y * S) for x, y in pts], fill=fill)

    def line(self, pts, fill, width):
        """A polyline with round caps and joints."""
        w = width * S
        self.d.line([(x * S, y * S) for x, y in pts], fill=fill, width=int(round(w)),
                    joint="curve")
        for x, y in pts:
            self.d.ellipse((x * S - w / 2, y * S - w / 2, x * S + w / 2, y * S + w / 2),
                           fill=fill)

    def arc(self, cx, cy, r, start, end, fill, width):
        """An arc (angles in degrees, clockwise from 3 o'clock as in Pillow) with round caps."""
        w = width * S
        self.d.arc(p(cx - r, cy - r, cx + r, cy + r), start, end, fill=fill,
                   width=int(round(w)))
        for a in (start, end):
            x = cx + r * math.cos(math.radians(a))
            y = cy + r * math.sin(math.radians(a))
            self.disc(x, y, width / 2, fill=fill)


def over(base, top, gap=1.5):
    """Composite `top` over `base`, first cutting a transparent gap of `gap` units around
    `top` out of `base` so a badge stays legible on any background."""
    if gap:
        size = int(gap * S) * 2 + 1
        halo = top.getchannel("A").filter(ImageFilter.MaxFilter(size))
        a = ImageChops.subtract(base.getchannel("A"), halo)
        base = base.copy()
        base.putalpha(a)
    return Image.alpha_composite(base, top)


# ---------------------------------------------------------------------------------------------
# Glyphs, drawn into a disc of radius r centred on (cx, cy)

def g_check(pen, cx, cy, r, col=WHITE):
    k = r / 7
    pen.line([(cx - 3.6 * k, cy + 0.2 * k), (cx - 1.0 * k, cy + 2.8 * k),
              (cx + 3.8 * k, cy - 2.6 * k)], col, 2.4 * k)


def g_cross(pen, cx, cy, r, col=WHITE):
    k = r / 7
    a = 3.0 * k
    pen.line([(cx - a, cy - a), (cx + a, cy + a)], col, 2.4 * k)
    pen.line([(cx - a, cy + a), (cx + a, cy - a)], col, 2.4 * k)


def g_arrow(pen, cx, cy, r, col=WHITE):
    k = r / 7
    pen.line([(cx - 3.8 * k, cy), (cx + 1.0 * k, cy)], col, 2.4 * k)
    pen.poly([(cx + 0.2 * k, cy - 3.9 * k), (cx + 4.6 * k, cy), (cx + 0.2 * k, cy + 3.9 * k)],
             col)


def g_play(pen, cx, cy, r, col=WHITE):
    k = r / 7
    pen.poly([(cx - 2.4 * k, cy - 4.0 * k), (cx + 4.0 * k, cy), (cx - 2.4 * k, cy + 4.0 * k)],
             col)


def g_bar(pen, cx, cy, r, col=WHITE):
    k = r / 7
    pen.rrect(cx - 4.2 * k, cy - 1.3 * k, cx + 4.2 * k, cy + 1.3 * k, 0.6 * k, fill=col)


def g_question(pen, cx, cy, r, col=WHITE):
    k = r / 7
    w = 2.2 * k
    pen.arc(cx, cy - 2.0 * k, 2.3 * k, 180, 405, col, w)  # the hook, ending at 45 degrees
    x = cx + 2.3 * k * math.cos(math.radians(45))
    y = cy - 2.0 * k + 2.3 * k * math.sin(math.radians(45))
    pen.line([(x, y), (cx, cy + 1.0 * k)], col, w)
    pen.disc(cx, cy + 3.9 * k, 1.25 * k, fill=col)


def g_undo(pen, cx, cy, r, col=DARK):
    """The 'undo' hook arrow: points left at the top, turns down and back on the right."""
    k = r / 7
    w = 2.2 * k
    top, bot = cy - 2.2 * k, cy + 3.4 * k
    rr = (bot - top) / 2
    ax = cx + 0.6 * k  # where the straight parts meet the turn
    pen.line([(cx - 1.6 * k, top), (ax, top)], col, w)
    pen.arc(ax, top + rr, rr, -90, 90, col, w)
    pen.line([(ax, bot), (cx - 2.6 * k, bot)], col, w)
    pen.poly([(cx - 5.0 * k, top), (cx - 1.2 * k, top - 3.4 * k), (cx - 1.2 * k, top + 3.4 * k)],
             col)


def g_clock(pen, cx, cy, r, col=WHITE):
    k = r / 7
    pen.line([(cx, cy - 4.0 * k), (cx, cy), (cx + 3.0 * k, cy + 1.6 * k)], col, 2.0 * k)


def g_bang(pen, cx, cy, r, col=WHITE):
    """Exclamation mark for the triangle badge (centred a little low, like the triangle)."""
    k = r / 7
    pen.line([(cx, cy - 2.2 * k), (cx, cy + 1.6 * k)], col, 2.3 * k)
    pen.disc(cx, cy + 4.4 * k, 1.25 * k, fill=col)


# ---------------------------------------------------------------------------------------------
# Badges (bottom-right corner by default)

BX, BY, BR = 24.0, 24.0, 7.5


def badge_disc(fill, glyph, glyph_col=WHITE, cx=BX, cy=BY, r=BR):
    layer = new_layer()
    pen = Pen(layer)
    pen.disc(cx, cy, r, fill=fill)
    glyph(pen, cx, cy, r * 0.93, glyph_col)
    return layer


def badge_triangle(fill=RED):
    layer = new_layer()
    pen = Pen(layer)
    # an equilateral-ish triangle with softened corners, same footprint as the disc badge
    top, bottom, half = BY - 8.0, BY + 6.8, 8.2
    pts = [(BX, top), (BX + half, bottom), (BX - half, bottom)]
    pen.poly(pts, fill)
    pen.line(pts + [pts[0]], fill, 1.6)
    g_bang(pen, BX, BY + 0.2, 6.6)
    return layer


def badge_prohibited(col=GREY):
    layer = new_layer()
    pen = Pen(layer)
    r = BR - 1.1
    pen.disc(BX, BY, r, outline=col, width=2.4)
    a = math.radians(45)
    dx, dy = (r - 1.0) * math.cos(a), (r - 1.0) * math.sin(a)
    pen.line([(BX - dx, BY - dy), (BX + dx, BY + dy)], col, 2.4)
    return layer


def badge_pin(cx=22.5, cy=21.0, scale=1.0):
    """The manual's push pin: an amber head and a needle pointing to the lower left."""
    layer = new_layer()
    pen = Pen(layer)
    k = scale
    ang = math.radians(45)  # the pin leans right
    ux, uy = math.sin(ang), -math.cos(ang)  # unit vector along the pin, needle -> head
    vx, vy = -uy, ux  # perpendicular

    def at(t, s):
        return (cx + ux * t * k + vx * s * k, cy + uy * t * k + vy * s * k)

    needle_col = GREY_LT
    pen.line([at(-2.0, 0), at(-9.5, 0)], needle_col, 1.8 * k)  # needle
    # body: collar (wide), waist, cap (wide): drawn as polygons along the pin's axis
    pen.poly([at(-2.6, -5.2), at(-2.6, 5.2), at(-0.6, 5.2), at(-0.6, -5.2)], AMBER)  # collar
    pen.poly([at(-1.0, -2.6), at(-1.0, 2.6), at(4.4, 2.6), at(4.4, -2.6)], AMBER)  # waist
    pen.poly([at(3.8, -4.2), at(3.8, 4.2), at(7.2, 4.2), at(7.2, -4.2)], AMBER)  # cap
    # a dark outline so the amber reads on white; invisible but harmless on dark grey
    outline = [at(-2.6, -5.2), at(-0.6, -5.2), at(-0.6, -2.6), at(3.8, -2.6), at(3.8, -4.2),
               at(7.2, -4.2), at(7.2, 4.2), at(3.8, 4.2), at(3.8, 2.6), at(-0.6, 2.6),
               at(-0.6, 5.2), at(-2.6, 5.2)]
    pen.line(outline + [outline[0]], (120, 80, 0, 255), 0.9 * k)
    return layer


# ---------------------------------------------------------------------------------------------
# Base shapes

def base_chassis():
    layer = new_layer()
    pen = Pen(layer)
    pen.rrect(3, 2, 29, 30, 3, fill=SLATE)
    for i in range(4):
        x = 6 + i * 5.5
        pen.rrect(x, 5, x + 4, 24, 1, fill=SLATE_DK)
        pen.disc(x + 2, 8, 1.0, fill=GREEN_LT)
    pen.rect(6, 26, 26, 27.5, fill=SLATE_DK)
    return layer


def base_hvm(led=GREEN_LT):
    layer = new_layer()
    pen = Pen(layer)
    for y in (5, 16):
        pen.rrect(2, y, 30, y + 10, 2.5, fill=SLATE)
        pen.disc(6.5, y + 5, 1.8, fill=led)
        for i in range(3):
            x = 12 + i * 4.5
            pen.rrect(x, y + 3, x + 2.2, y + 7, 0.8, fill=SLATE_DK)
    return layer


def base_lpar(screen=SCREEN, body=SLATE, content=None):
    layer = new_layer()
    pen = Pen(layer)
    pen.rrect(2, 4, 28, 27, 3, fill=body)
    pen.rrect(5, 9, 25, 24, 1.5, fill=screen)
    # two "window" dots on the title bar
    pen.disc(6, 6.5, 1.0, fill=screen)
    pen.disc(9.2, 6.5, 1.0, fill=screen)
    if content:
        content(pen)
    return layer


def lpar_activated_screen(pen):
    for y, x1 in ((12.5, 20), (16.5, 17), (20.5, 21)):
        pen.line([(8.5, y), (x1, y)], WHITE, 2.0)


def lpar_deactivated_screen(pen):
    # the IEC power symbol, light grey on the dark screen
    cx, cy, r = 15, 16.8, 4.6
    pen.arc(cx, cy, r, -55, 235, GREY_LT, 2.0)
    pen.line([(cx, cy - r - 1.0), (cx, cy - 0.8)], GREY_LT, 2.0)


def lpar_unrecoverable_screen(pen):
    pen.rrect(5, 9, 25, 24, 1.5, fill=RED)
    g_cross(pen, 15, 16.5, 8.5)


def base_lpar_unassigned():
    """A free slot: the window as a dashed outline with a '+' (selectable as destination)."""
    layer = new_layer()
    pen = Pen(layer)
    x0, y0, x1, y1, w = 3, 5, 27, 26, 2.0
    col = GREY
    # dashes along each side; the corners are drawn as short L's so the outline closes neatly
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)),
                               ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = math.hypot(bx - ax, by - ay)
        n = 4  # dashes per side
        dash = length / (2 * n - 1)
        for i in range(n):
            t0, t1 = (2 * i) * dash / length, (2 * i + 1) * dash / length
            pen.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0),
                      (ax + (bx - ax) * t1, ay + (by - ay) * t1)], col, w)
    pen.line([(15, 11.5), (15, 19.5)], GREEN, 2.6)
    pen.line([(11, 15.5), (19, 15.5)], GREEN, 2.6)
    return layer


def base_tag(col=SLATE, hollow=False, arrow=False):
    """A name tag pointing left (a WWPN is a port *name*), hole near the point."""
    layer = new_layer()
    pen = Pen(layer)
    cy = 13.5  # above centre, leaving the bottom-right corner to the badge
    pts = [(2.5, cy), (10.5, cy - 9), (29, cy - 9), (29, cy + 9), (10.5, cy + 9)]
    if hollow:
        pen.line(pts + [pts[0]], col, 2.4)
        pen.disc(9.5, cy, 2.0, fill=col)
    else:
        pen.poly(pts, col)
        pen.line(pts + [pts[0]], col, 1.6)  # rounds the corners a little
        # punch the hole through
        hole = new_layer()
        Pen(hole).disc(9.5, cy, 2.2, fill=WHITE)
        a = ImageChops.subtract(layer.getchannel("A"), hole.getchannel("A"))
        layer.putalpha(a)
        pen = Pen(layer)
    if arrow:
        c = col if hollow else WHITE
        pen.line([(13.5, cy), (18.5, cy)], c, 2.4)
        pen.poly([(18.0, cy - 3.5), (23.0, cy), (18.0, cy + 3.5)], c)
    return layer


def auto_icon():
    """'Auto' destination: a wand with sparkles (the manager picks the destination)."""
    layer = new_layer()
    pen = Pen(layer)
    pen.line([(4.5, 27.5), (17.5, 14.5)], SLATE, 3.6)
    pen.line([(15.6, 16.4), (18.4, 13.6)], WHITE, 3.6)  # the wand's tip
    pen.line([(15.6, 16.4), (18.4, 13.6)], PURPLE, 2.0)

    def star(cx, cy, r, col):
        t = r * 0.32
        pen.poly([(cx, cy - r), (cx + t, cy - t), (cx + r, cy), (cx + t, cy + t),
                  (cx, cy + r), (cx - t, cy + t), (cx - r, cy), (cx - t, cy - t)], col)

    star(22.5, 9.0, 7.5, PURPLE)
    star(10.5, 8.0, 3.6, PURPLE)
    star(26.5, 22.0, 3.6, PURPLE)
    return layer


# ---------------------------------------------------------------------------------------------
# The icons

def exec_disc(fill, glyph):
    layer = new_layer()
    pen = Pen(layer)
    pen.disc(16, 16, 14, fill=fill)
    glyph(pen, 16, 16, 13.5)
    return layer


def exec_terminating():
    """Abnormally ended (the red cross disc, smaller, upper left) and still running its
    termination processing (the in-progress badge)."""
    layer = new_layer()
    pen = Pen(layer)
    pen.disc(13, 13, 11.5, fill=RED)
    g_cross(pen, 13, 13, 11)
    return over(layer, badge_disc(BLUE, g_play, cx=24, cy=24, r=7.5), gap=1.6)


def icons():
    check = lambda: badge_disc(GREEN, g_check)  # noqa: E731
    failed = badge_triangle
    migrating = lambda: badge_disc(BLUE, g_arrow)  # noqa: E731
    blocked = lambda: badge_disc(RED, g_bar)  # noqa: E731
    unknown = lambda: badge_disc(GREY, g_question)  # noqa: E731
    rollback = lambda: badge_disc(AMBER, g_undo, DARK)  # noqa: E731

    def mig_tag_badge():
        """A small blue tag (the migration WWPN), with its hole: the disc with an arrow
        already means 'being migrated'."""
        layer = new_layer()
        pen = Pen(layer)
        cy = 24.5
        pts = [(16.0, cy), (21.0, cy - 6.5), (31.0, cy - 6.5), (31.0, cy + 6.5), (21.0, cy + 6.5)]
        pen.poly(pts, BLUE)
        pen.line(pts + [pts[0]], BLUE, 1.4)
        pen.disc(21.2, cy, 1.7, fill=WHITE)
        pen.rrect(24.2, cy - 1.2, 29.0, cy + 1.2, 0.6, fill=WHITE)  # the name on the tag
        return layer

    return {
        "chassis": base_chassis(),
        "auto": auto_icon(),
        # Table 7-1
        "hvm_normal": base_hvm(),
        "hvm_update_failed": over(base_hvm(led=GREY_LT), failed()),
        "hvm_requires_recovery": over(base_hvm(), badge_pin(scale=1.12)),
        "hvm_migrating": over(base_hvm(), migrating()),
        # Table 7-2
        "lpar_unassigned": base_lpar_unassigned(),
        "lpar_deactivated": base_lpar(screen=OFF, body=GREY, content=lpar_deactivated_screen),
        "lpar_activated": base_lpar(screen=GREEN, content=lpar_activated_screen),
        "lpar_requires_recovery": over(base_lpar(), badge_pin(scale=1.12)),
        "lpar_not_selectable": over(base_lpar(screen=(190, 195, 201, 255), body=GREY),
                                    badge_prohibited()),
        "lpar_blocked": over(base_lpar(), blocked()),
        "lpar_update_failed": over(base_lpar(), failed()),
        "lpar_migrating": over(base_lpar(), migrating()),
        "lpar_unrecoverable": base_lpar(content=lpar_unrecoverable_screen),
        "lpar_wwn_rollback": over(base_lpar(), rollback()),
        "lpar_migration_wwpn": over(base_lpar(), mig_tag_badge()),
        "lpar_wwn_unknown": over(base_lpar(), unknown()),
        # Table 7-3
        "exec_done": exec_disc(GREEN, g_check),
        "exec_in_progress": exec_disc(BLUE, g_play),
        "exec_queued": exec_disc(GREY, g_clock),
        "exec_failed": exec_disc(RED, g_cross),
        "exec_terminating": exec_terminating(),
        # Table 7-4
        "wwpn_registered": over(base_tag(), check()),
        "wwpn_unregistered": base_tag(col=GREY, hollow=True),
        # Table 7-5
        "mig_wwpn_registered": over(base_tag(col=BLUE, arrow=True), check()),
        "mig_wwpn_unregistered": base_tag(col=BLUE, hollow=True, arrow=True),
        "mig_wwpn_unregistrable": over(base_tag(col=BLUE, hollow=True, arrow=True),
                                       badge_prohibited(col=RED)),
    }


def main():
    for name, big in icons().items():
        img = big.resize((N, N), Image.LANCZOS)
        img.save(os.path.join(OUT, name + ".png"), optimize=True)
        print(name + ".png")


if __name__ == "__main__":
    main()
