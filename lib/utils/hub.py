"""Weights named ``hf-hub:OWNER/REPO``: a repository's ``model.safetensors`` on the
Hugging Face Hub, as timm names its weights (e.g. ``hf-hub:timm/hrnet_w48.ms_in1k``).

The download goes through the optional ``huggingface_hub`` package, imported only when
such a name is used, into its cache (``HF_HOME``, by default ``~/.cache/huggingface``):
the first run downloads, later runs (and runs without network, once cached) read the
cached file. Without network and without a cached copy, one connection attempt of at
most a few seconds tells, and the error says so in one line (the client itself would
retry for half a minute, printing a warning each time).
"""
import contextlib
import logging
import os
import socket
import urllib.request
import warnings
from urllib.parse import urlsplit

from .errors import CheckpointError, ConfigError

HUB_PREFIX = 'hf-hub:'
HUB_FILE = 'model.safetensors'
HUB_ENDPOINT = 'https://huggingface.co'  # huggingface_hub's default (HF_ENDPOINT sets another)
MAX_REASON = 300  # characters of the Hub's own reason shown in full in the one-line message
TRUE_WORDS = ('1', 'ON', 'YES', 'TRUE')  # what huggingface_hub reads as set
PROBE_TIMEOUT_S = 3  # a connection to the Hub (or the proxy) that takes longer: offline


def is_hub_name(name):
    """Whether a weights setting names a Hub repository rather than a file."""
    return name.startswith(HUB_PREFIX)


def hub_repository(name, key):
    """``OWNER/REPO`` of ``hf-hub:OWNER/REPO``.

    Raises:
        ConfigError: the name is not of that form.
    """
    repo = name[len(HUB_PREFIX):]
    if repo.count('/') != 1 or not all(repo.split('/')):
        raise ConfigError(f'{key} {name!r}: expected {HUB_PREFIX}OWNER/REPO, '
                          f'e.g. {HUB_PREFIX}timm/hrnet_w48.ms_in1k')
    return repo


def hub_address(endpoint):
    """(host, port) that a download from ``endpoint`` connects to first: the HTTPS proxy
    of the environment when one is set, else the endpoint itself."""
    url = urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ''):
        url = urlsplit(proxy if '://' in proxy else f'http://{proxy}')
    return url.hostname, url.port or (443 if url.scheme == 'https' else 80)


def unreachable(endpoint, timeout=PROBE_TIMEOUT_S):
    """Why ``endpoint`` cannot be reached (one connection attempt, at most ``timeout``
    seconds), or None when it answers. The Hub client would retry for half a minute
    before it said the same."""
    host, port = hub_address(endpoint)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:  # no DNS, refused, unreachable network, timed out
        return f'{host}:{port} cannot be reached: {e.strerror or e}'
    return None


@contextlib.contextmanager
def _quiet_hub():
    """The Hub client's retry warnings off (its logger and Python warnings), so that a
    failure reads as our one line."""
    hub_logger = logging.getLogger('huggingface_hub')
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        hub_logger.setLevel(level)


def _reason(error):
    """The Hub's message of ``error`` on one line: whole when short, else its first line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    whole = ' '.join(lines)
    if not whole:
        return type(error).__name__
    if len(whole) <= MAX_REASON:
        return whole
    first = lines[0]
    return first if len(first) <= MAX_REASON else first[:MAX_REASON].rstrip() + '...'


def hub_weights_file(name, key):
    """The local path of ``model.safetensors`` of ``hf-hub:OWNER/REPO``: the Hugging Face
    cache's copy, else downloaded into it. Without network the answer comes within
    :data:`PROBE_TIMEOUT_S` seconds, in one line.

    Args:
        name (str): ``hf-hub:OWNER/REPO``.
        key (str): the config key that holds the name, for messages.
    Raises:
        ConfigError: the name is not ``hf-hub:OWNER/REPO``.
        CheckpointError: ``huggingface_hub`` is not installed, the Hub cannot be reached
            and the file is not cached, or the download failed.
    """
    repo = hub_repository(name, key)
    by_hand = (f'or download {HUB_FILE} of https://huggingface.co/{repo} and set {key} '
               'to its path')
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f'{key} {name} needs the huggingface_hub package: pip install '
                              f'huggingface_hub, {by_hand}') from None
    with _quiet_hub():
        try:
            return str(hf_hub_download(repo, HUB_FILE, local_files_only=True))
        except Exception:  # noqa: BLE001  (not cached: download it below)
            pass
        if os.environ.get('HF_HUB_OFFLINE', '').upper() in TRUE_WORDS:
            raise CheckpointError(f'{key} {name}: {HUB_FILE} is not in the Hugging Face cache '
                                  'and HF_HUB_OFFLINE is set: unset it to download, '
                                  f'{by_hand}')
        endpoint = os.environ.get('HF_ENDPOINT') or HUB_ENDPOINT
        offline = unreachable(endpoint)
        if offline:
            raise CheckpointError(f'{key} {name}: {HUB_FILE} is not in the Hugging Face cache '
                                  f'and the Hub is offline ({offline}): connect to the network '
                                  f'and run again, {by_hand}')
        try:
            return str(hf_hub_download(repo, HUB_FILE))
        except Exception as e:  # noqa: BLE001
            # Connection, HTTP, missing-repository and offline errors come from requests,
            # httpx or huggingface_hub itself depending on its version; each means the
            # same to the user: no file.
            raise CheckpointError(f'{key} {name}: downloading {HUB_FILE} from the Hugging Face '
                                  f'Hub failed ({_reason(e)}): check the network connection and '
                                  f'the name, {by_hand}') from None
