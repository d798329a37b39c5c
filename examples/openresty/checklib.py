"""What the OpenResty example's check scripts share: one TAP-like line per check."""
import sys


def check(name, fn):
    """runs fn, which returns None when the check holds, else why it does not"""
    try:
        why = fn()
    except Exception as e:  # a failed check, not a crash of the whole run
        why = "%s: %s" % (type(e).__name__, e)
    if why:
        print("not ok - %s: %s" % (name, str(why).replace("\n", " ")[:400]))
    else:
        print("ok - %s" % name)
    sys.stdout.flush()
