"""ui.admission: at most ``limit`` pages build at once, the others wait in arrival order with
their place shown, and a page waiting for a training steps aside."""

import threading
import time

import pytest

from ui.admission import Admission


def _until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_at_most_limit_build_at_once_and_the_rest_go_in_arrival_order():
    admission, order, places = Admission(limit=2), [], {}
    release = threading.Event()

    def visitor(k):
        def show(ahead):
            places.setdefault(k, []).append(ahead)

        with admission.turn(show):
            order.append(k)
            release.wait()

    threads = []
    for k in range(5):
        threads.append(threading.Thread(target=visitor, args=(k,)))
        threads[-1].start()
        _until(lambda k=k: admission.state()["building"] + admission.state()["waiting"] == k + 1)
    _until(lambda: len(order) == 2)
    time.sleep(0.3)
    assert order == [0, 1] and admission.state() == {"building": 2, "waiting": 3}
    assert places[2][-1] == 0 and places[3][-1] == 1 and places[4][-1] == 2  # their places
    release.set()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4] and admission.state() == {"building": 0, "waiting": 0}


def test_a_visitor_who_leaves_while_waiting_gives_up_the_place():
    admission, hold = Admission(limit=1), threading.Event()

    def first():
        with admission.turn(lambda ahead: None):
            hold.wait()

    t = threading.Thread(target=first)
    t.start()
    _until(lambda: admission.state()["building"] == 1)

    def leave(ahead):
        raise KeyboardInterrupt  # what Streamlit's StopException does at the next call

    with pytest.raises(KeyboardInterrupt), admission.turn(leave):
        pass
    assert admission.state() == {"building": 1, "waiting": 0}
    hold.set()
    t.join(5)


def test_waiting_for_a_training_lets_the_next_visitor_in():
    admission, trained, entered = Admission(limit=1), threading.Event(), threading.Event()

    def waits_for_training():
        with admission.turn(lambda ahead: None), admission.aside():
            trained.wait()

    def cached_page():
        with admission.turn(lambda ahead: None):
            entered.set()

    a = threading.Thread(target=waits_for_training)
    a.start()
    _until(lambda: admission.state()["building"] == 0 and a.is_alive())
    b = threading.Thread(target=cached_page)
    b.start()
    assert entered.wait(2)  # not held up behind the training
    trained.set()
    a.join(5)
    b.join(5)
    assert admission.state() == {"building": 0, "waiting": 0}


def test_back_from_a_training_a_page_goes_before_visitors_without_a_turn_yet():
    admission, order = Admission(limit=1), []
    trained, b_done = threading.Event(), threading.Event()

    def a():
        with admission.turn(lambda ahead: None):
            with admission.aside():
                trained.wait()
            order.append("a")

    def b():
        with admission.turn(lambda ahead: None):
            order.append("b")
            b_done.wait()

    def c():
        with admission.turn(lambda ahead: None):
            order.append("c")

    ta = threading.Thread(target=a)
    ta.start()
    _until(lambda: admission.state()["building"] == 0 and ta.is_alive())
    tb = threading.Thread(target=b)
    tb.start()
    _until(lambda: order == ["b"])
    tc = threading.Thread(target=c)
    tc.start()
    _until(lambda: admission.state()["waiting"] == 1)
    trained.set()  # a's training is done while b builds and c waits
    time.sleep(0.3)
    assert order == ["b"]  # a waits for b's turn to end: at most one builds
    b_done.set()
    for t in (ta, tb, tc):
        t.join(5)
    assert order == ["b", "a", "c"]


def test_stepping_aside_twice_gives_the_turn_away_once():
    admission = Admission(limit=2)
    with admission.turn(lambda ahead: None):
        with admission.aside(), admission.aside():  # a training's wait inside a figure's wait
            assert admission.state()["building"] == 0
        assert admission.state()["building"] == 1
    assert admission.state() == {"building": 0, "waiting": 0}


def test_busy_while_a_page_builds_not_while_it_waits_for_a_training():
    admission = Admission(limit=1)
    assert not admission.busy()
    with admission.turn(lambda ahead: None):
        assert admission.busy()
        with admission.aside():
            assert not admission.busy()  # the queue counts its training
        assert admission.busy()
    assert not admission.busy()
