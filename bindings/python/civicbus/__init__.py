"""civicbus: the Python bindings of the civicbus C++ SDK.

Everything lives in the extension module ``civicbus._civicbus`` (pybind11) and is re-exported
here: ``civicbus.Node``, ``civicbus.Broker``, ``civicbus.Gateway``, ``civicbus.Connector``,
``civicbus.Pipeline``, ``civicbus.MatchEngine``, ``civicbus.DeviceFleet``, the exception
classes (``civicbus.Error`` and one subclass per status code) and the free functions. See
bindings/python/README.md.
"""

from ._civicbus import *  # noqa: F401,F403 (the package is the extension's namespace)
from ._civicbus import __version__  # noqa: F401
