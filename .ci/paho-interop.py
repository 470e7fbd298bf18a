# Runs one script of the Eclipse Paho interoperability suite
# (interoperability/client_test.py or client_test5.py of a checkout of
# eclipse/paho.mqtt.testing) against HOST:PORT, and appends one line per test,
# "NAME<TAB>pass|fail|error|timeout", to RESULTS. Used by .ci/paho-interop.
#
# usage: python3 paho-interop.py SCRIPT HOST PORT RESULTS [SECONDS]
#
# The suite's scripts parse their own options and then call unittest.main(),
# which would parse them again; this wrapper hands unittest an argument list
# of its own, records each outcome, and bounds each test (SECONDS, 60 by
# default): some tests wait forever for a packet a broker may never send.
import os
import runpy
import signal
import sys
import unittest

script, host, port, results = sys.argv[1:5]
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 60


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout("no result after %ds" % limit)


class Recorder(unittest.TextTestResult):
    def _record(self, test, outcome):
        with open(results, "a") as f:
            f.write("%s\t%s\n" % (test._testMethodName, outcome))

    def startTest(self, test):
        super().startTest(test)
        signal.alarm(limit)

    def stopTest(self, test):
        signal.alarm(0)
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "fail")

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "timeout" if err[0] is TestTimeout else "error")


real_main = unittest.main


def main(*args, **kwargs):
    kwargs["argv"] = [script, "-v"]
    kwargs["testRunner"] = unittest.TextTestRunner(resultclass=Recorder, verbosity=2)
    kwargs["exit"] = False
    return real_main(*args, **kwargs)


signal.signal(signal.SIGALRM, on_alarm)
unittest.main = main
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
# The scripts' option loops test `o in ("--help")`, a string, so "-h" reads
# as --help: the host goes in its long form. client_test5.py removes "-p"
# and the port from sys.argv itself.
sys.argv = [script, "--hostname=" + host, "-p", port]
runpy.run_path(script, run_name="__main__")
