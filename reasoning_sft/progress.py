"""Progress bars on a terminal, nothing when output goes to a file or a cluster log."""


def progress(iterable=None, **kw):
    from tqdm.auto import tqdm
    kw.setdefault("mininterval", 1.0)
    return tqdm(iterable, disable=None, **kw)  # disable=None: off when stderr is not a TTY
