"""The classroom: a presentation mode that fits a projector, predict-then-reveal questions, and
teacher links.

- **Presentation mode** (``?present=true``, ``ui.theme``): the sidebar starts collapsed, a page's
  introduction folds into an expander (``folded``), and the main chart comes before its display
  controls (``chart_first``), so the first screen of a 1280×720 projector shows it whole.
- **Predict, then reveal** (``?quiz=<name>``, the questions and answers are ``bnlr.quiz``): the
  page asks its question and stops there until the student presses *Reveal*, so no chart gives
  the answer away; then it draws as usual, with the guess marked and how far off it was. The
  guess lives in the student's own session (a widget's state), never in the URL or on disk.
- **Hide flags** (``?hide=<control>,…``, like the TensorFlow Playground's): the named controls
  are hidden with CSS, so they still take their values from the link (the URL holds every
  setting) while the class sees only what the exercise is about.
- **The link for my class**: a sidebar popover that builds such a link from the page as it is.

A bad ``quiz`` or ``hide`` value gets one notice (``ui.urlcheck``) and the page works as usual.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import altair as alt
import streamlit as st

from bnlr import quiz
from bnlr.evidence import Verdict, sentence
from ui import theme, urlcheck

QUIZ, HIDE = "quiz", "hide"  # URL parameters
SIDEBAR = "sidebar"  # hide=sidebar hides the whole sidebar (navigation and every control)
_BOX = "_classroom_box"  # session-state key of the sidebar container for the link popover
_NAME = re.compile(r"[A-Za-z0-9_]+")  # a control's key (only those reach the CSS)


def _listed(key: str) -> list[str]:
    """Returns the comma-separated names of URL parameter ``key`` (``hide=a,b&hide=c``)."""
    return [n for v in st.query_params.get_all(key) for n in (p.strip() for p in v.split(",")) if n]


def hidden() -> list[str]:
    """Returns the control keys the link hides (well-formed names only)."""
    return [n for n in _listed(HIDE) if _NAME.fullmatch(n)]


def hide_css(names: list[str]) -> str:
    """Returns the style that hides these controls (Streamlit gives a keyed widget the class
    ``st-key-<key>``); ``sidebar`` hides the sidebar and its open button."""
    rules = [f".st-key-{n}" for n in names if n != SIDEBAR]
    if SIDEBAR in names:
        rules += [
            '[data-testid="stSidebar"]',
            '[data-testid="stSidebarCollapsedControl"]',
            '[data-testid="stExpandSidebarButton"]',
        ]
    return f"<style>{', '.join(rules)} {{ display: none !important; }}</style>" if rules else ""


def start(page: str) -> None:
    """Reads the link's classroom parameters (call right after ``urlcheck.start``): hides the
    controls it names, checks its quiz, and places the link popover's box in the sidebar."""
    urlcheck.known(QUIZ, HIDE)
    urlcheck.names(QUIZ, quiz.for_page(page), "no question is asked")
    css = hide_css(hidden())
    if css:
        st.html(css)
    st.session_state[_BOX] = st.sidebar.container()


def controls() -> list[str]:
    """Returns the keys of the controls drawn so far (the session's widget keys: keys that are
    URL parameters; internal state starts with ``_`` or holds a ``:``)."""
    keys = [k for k in st.session_state if isinstance(k, str)]
    return sorted(k for k in keys if _NAME.fullmatch(k) and not k.startswith("_"))


def finish(page: str) -> None:
    """Checks the link's hide names against the page's controls, shows the URL notices, and draws
    the "copy the link for my class" popover (call at the end of the page)."""
    names = controls()
    urlcheck.names(HIDE, [*names, SIDEBAR], "the other controls are hidden")
    urlcheck.finish()
    box = st.session_state.get(_BOX)
    if box is not None:
        with box:
            link_popover(page, names)


# ---------------------------------------------------------------- presentation mode


def folded(label: str = "About this page"):
    """Returns where an explanation goes: an expander in presentation mode (the chart gets the
    first screen), the page itself otherwise: ``with classroom.folded(): st.markdown(...)``."""
    return st.expander(label) if theme.presenting() else contextlib.nullcontext()


def chart_first():
    """Returns (chart area, display-controls area): in presentation mode the chart comes first,
    so that it is on the first screen; otherwise the controls sit above what they change."""
    first, second = st.container(), st.container()
    return (first, second) if theme.presenting() else (second, first)


def chart(spec, stretch: bool = False) -> None:
    """Draws an Altair chart; ``stretch``: in presentation mode it takes its container's width
    (for single and layered charts; Vega-Lite cannot stretch a facet chart)."""
    if stretch and theme.presenting():
        st.altair_chart(stretched(spec), width="stretch")
    else:
        st.altair_chart(spec)


def stretched(spec):
    """Returns the chart sized to its container's width, its height its own: what ``chart``
    draws in presentation mode (drawn with ``width="stretch"``)."""
    # fit-x: the height stays the plot's own (plain "fit" squeezed the plot under the legend)
    fit = alt.AutoSizeParams(type="fit-x", contains="padding")
    return spec.properties(width="container", autosize=fit)


# ---------------------------------------------------------------- predict, then reveal


@dataclass
class Asked:
    """A question the student answered: its name, the guess, and where the reveal goes."""

    name: str
    guess: object
    box: object  # st container under the question


def _revealed_key(page: str, name: str) -> str:
    return f"_quiz_revealed:{page}:{name}"


def _set(key: str, value) -> Callable[[], None]:
    def set_it():
        st.session_state[key] = value

    return set_it


def _fmt(value) -> str:
    return f"{value:.2g}" if isinstance(value, float) else str(value)


def asked_quiz(page: str) -> str | None:
    """Returns the link's quiz if this page asks it, else None."""
    names = _listed(QUIZ)
    name = names[-1] if names else None
    return name if name in quiz.for_page(page) else None


def ask(page: str, lrs=(), schedules=()) -> Asked | None:
    """Asks the link's question, if it is one of this page's (None otherwise).

    Draws the question, the guess widget and a reveal button; until the reveal the page stops
    here (``finish`` runs first), so nothing below it is drawn. After the reveal the guess is
    locked and returned with a box for ``reveal``.
    """
    name = asked_quiz(page)
    if name is None:
        return None
    q, options = quiz.QUIZZES[name], quiz.choices(name, lrs, schedules)
    key, revealed_key = f"_quiz_guess:{page}:{name}", _revealed_key(page, name)
    revealed = bool(st.session_state.get(revealed_key))
    with st.container(border=True):
        st.markdown(f"#### 🤔 Predict first\n{q.question}")
        if q.asks_for in ("lr", "lr_or_none"):
            guess = st.select_slider(
                f"Your guess: learning rate (the lr axis, {_fmt(options[0])} to "
                f"{_fmt(options[-1])})",
                options,
                value=options[len(options) // 2],
                format_func=_fmt,
                key=key,
                disabled=revealed,
            )
        else:
            guess = st.radio(
                "Your answer",
                options,
                index=None,
                key=key,
                horizontal=True,
                disabled=revealed,
                format_func=lambda s: f"`{s}`" if q.asks_for == "schedule" else s,
            )
        box = st.container()
        if revealed:
            st.button("↺ Ask again", on_click=_set(revealed_key, False), key=f"_again:{name}")
        else:
            st.button(
                "Reveal the answer",
                type="primary",
                on_click=_set(revealed_key, True),
                disabled=guess is None,
                key=f"_reveal:{name}",
            )
            st.caption(
                "Your guess stays in this browser tab's session: it is not in the link and is not "
                "saved. The charts appear when you reveal."
            )
    if not revealed:
        finish(page)
        st.stop()
    return Asked(name, guess, box)


def reveal(asked: Asked | None, answer: quiz.Answer, claim: str = "") -> None:
    """Shows, under the question, the answer, the student's guess and how far off it was.

    Args:
        claim: for ``bn_more``, the verdict's sentence subject (as the page writes it).
    """
    if asked is None:
        return
    text = {
        "best_lr": _best_lr,
        "diverge": _diverge,
        "bn_more": lambda g, a: _bn_more(g, a, claim),
        "best_schedule": _best_schedule,
        "batch_lr": _batch_lr,
    }.get(asked.name, _said)(asked.guess, answer)
    with asked.box:
        if answer.answer is None:
            st.info(text, icon="🤷")
        elif answer.right:
            st.success(text, icon="✅")
        else:
            st.warning(text, icon="🎯")


def _said(guess, a: quiz.Answer) -> str:
    """The reveal of a quiz whose answer says itself (``Answer.said``: past_wall, warmup)."""
    return f"Your answer: **{guess}**. {a.said}"


def _off(decades: float) -> str:
    if decades < 1e-9:
        return "**right on** (0 decades off)"
    return f"**{decades:.2f} decades** off (a factor {10**decades:.2g})"


def _best_lr(guess: float, a: quiz.Answer) -> str:
    per = a.per_network
    groups = [
        f"lr **{lr:.2g}** for {', '.join(part['arch'])} "
        f"(your guess: {part['decades'].iloc[0]:.2f} decades off)"
        for lr, part in per.groupby("best_lr", sort=True)
    ]
    if len(groups) == 1:
        return (
            f"Your guess: lr **{guess:.2g}** (the dashed line). The lowest final loss is at "
            f"lr **{a.answer[0]:.2g}** for every network (◆ on the chart, the seed-mean curve): "
            f"you were {_off(a.decades)}."
        )
    return (
        f"Your guess: lr **{guess:.2g}** (the dashed line). The networks disagree; the lowest "
        f"final loss (◆ on the chart, the seed-mean curve) is at " + "; ".join(groups) + ". "
        f"You were {_off(a.decades)} from the nearest."
    )


def _diverge(guess, a: quiz.Answer) -> str:
    said = f"Your guess: **{_fmt(guess)}**."
    if a.answer == quiz.NONE_DIVERGES:
        return (
            f"{said} **No run diverged** at these settings, up to the largest lr tried: every "
            "loss stayed finite. Raise the highest lr or the epochs to find the wall."
        )
    if guess == quiz.NONE_DIVERGES:
        return f"{said} Training **does** diverge, from lr **{a.answer:.2g}** on (grey region)."
    return (
        f"{said} Training first diverges at lr **{a.answer:.2g}** (the smallest lr where some "
        f"run's loss blew up; grey region, your guess is the dashed line): you were "
        f"{_off(a.decades)}."
    )


def _bn_more(guess: str, a: quiz.Answer, claim: str) -> str:
    v: Verdict = a.verdicts["bn"]
    said = f"Your answer: **{guess}**."
    if a.answer is None:
        return f"{said} The page cannot answer it at these settings: {v.reason}."
    return f"{said} The answer over {v.seeds} seeds is **{a.answer}**. " + sentence(
        v, claim, "more"
    )


def _best_schedule(guess: str, a: quiz.Answer) -> str:
    rank = ", ".join(f"`{s}` {f:.3g}" for s, f in a.ranking.itertuples(index=False))
    text = (
        f"Your answer: `{guess}`. The lowest final loss is `{a.answer}` (geometric mean over "
        f"models and seeds; lowest first: {rank})."
    )
    undecided = [s for s, v in a.verdicts.items() if not v.answered]
    if a.also_right:
        listed = ", ".join(f"`{s}`" for s in a.also_right)
        text += (
            f" **Not consistent over seeds**: `{a.answer}` does not end consistently lower than "
            f"{listed} (the 90 % interval includes no difference), so those count as right too."
        )
    elif undecided:
        text += (
            " With one seed the page cannot tell whether this holds over seeds (one seed is one "
            "sample of chaos): add seeds in the sidebar."
        )
    elif a.verdicts:
        text += f" `{a.answer}` ends lower than every other schedule, consistently over seeds."
    return text


def _batch_lr(guess: str, a: quiz.Answer) -> str:
    said = f"Your answer: **{guess}**."
    if a.answer is None:
        return f"{said} No network was trained at both batch sizes: widen the batch sizes."
    per = "; ".join(
        f"{r.network}: best lr × {r.factor:.2g} from B = {r.from_batch} to {r.to_batch} "
        f"(nearest: {r.nearest})"
        for r in a.per_network.itertuples()
    )
    return (
        f"{said} On this page ({per}; the ◆ of the ridge, geometric mean over seeds). "
        "Linear scaling would say × 8; past the noise scale the best lr stops growing."
    )


# ---------------------------------------------------------------- the link for my class


def teacher_link(
    base: str, params: dict[str, list[str]], ask: str | None, hide: list[str], present: bool
) -> str:
    """Returns ``base`` with the page's parameters and the classroom ones (present, quiz, hide).

    >>> teacher_link("http://x/lr-curve", {"epochs": ["5"]}, "best_lr", ["seeds"], True)
    'http://x/lr-curve?epochs=5&present=true&quiz=best_lr&hide=seeds'
    """
    own = {k: v for k, v in params.items() if k not in (QUIZ, HIDE, theme.PRESENT_KEY)}
    extra = {theme.PRESENT_KEY: ["true"]} if present else {}
    if ask:
        extra[QUIZ] = [ask]
    if hide:
        extra[HIDE] = [",".join(hide)]
    query = urlencode({**own, **extra}, doseq=True, safe=",")
    return f"{base}?{query}" if query else base


def link_popover(page: str, names: list[str]) -> None:
    """The sidebar's "copy the link for my class" popover: choose a question, controls to hide and
    presentation mode; the link, with every current setting, has a copy button."""
    # opening it reruns the page, so the link reads the URL as it is now (the browser updates a
    # bound control's parameter after the rerun that control asked for)
    with st.popover(
        "🔗 Copy the link for my class",
        width="stretch",
        key="_class_link",
        on_change="rerun",
    ):
        quizzes = quiz.for_page(page)
        ask_it = None
        if quizzes:
            ask_it = st.selectbox(
                "Ask first (predict, then reveal)",
                ["", *quizzes],
                format_func=lambda n: quiz.QUIZZES[n].question if n else "no question",
                key="_class_quiz",
            )
        options = [*names, SIDEBAR]
        hide = st.multiselect(
            "Hide these controls",
            options,
            default=[n for n in hidden() if n in options],
            key="_class_hide",
            help="The link still holds their values; the class just does not see them.",
        )
        present = st.toggle("Presentation mode", True, key="_class_present")
        params = {k: st.query_params.get_all(k) for k in st.query_params}
        link = teacher_link(st.context.url or "", params, ask_it, hide, present)
        st.code(link, language=None, wrap_lines=True)
        st.caption(
            "Copy it with the button at the top right of the box: the link holds every "
            "setting of this page as it is now."
        )
