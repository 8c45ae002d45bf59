from ._civicbus import *
from ._civicbus import __version__ as __version__
