import os, site, sys  # streamrec stub shim, the same for every model: numpy-1.26 overlay first, then the project's site-packages
if os.environ.get("STREAMREC_STUB_OVERLAY"): sys.path.insert(0, os.environ["STREAMREC_STUB_OVERLAY"])
if os.environ.get("STREAMREC_STUB_SITE"): site.addsitedir(os.environ["STREAMREC_STUB_SITE"])
from serving.pipeline.runtime import TritonPythonModel  # noqa: E402,F401  (the stage comes from args["model_name"])
