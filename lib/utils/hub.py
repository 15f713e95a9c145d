"""Weights named ``hf-hub:OWNER/REPO``: a repository's ``model.safetensors`` on the
Hugging Face Hub, as timm names its weights (e.g. ``hf-hub:timm/hrnet_w48.ms_in1k``).

The download goes through the optional ``huggingface_hub`` package, imported only when
such a name is used, into its cache (``HF_HOME``, by default ``~/.cache/huggingface``):
the first run downloads, later runs (and runs without network, once cached) read the
cached file.
"""
from .errors import CheckpointError, ConfigError

HUB_PREFIX = 'hf-hub:'
HUB_FILE = 'model.safetensors'
MAX_REASON = 200  # characters of the download error shown in the one-line message


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


def hub_weights_file(name, key):
    """The local path of ``model.safetensors`` of ``hf-hub:OWNER/REPO``, downloaded
    into the Hugging Face cache unless it is there already.

    Args:
        name (str): ``hf-hub:OWNER/REPO``.
        key (str): the config key that holds the name, for messages.
    Raises:
        ConfigError: the name is not ``hf-hub:OWNER/REPO``.
        CheckpointError: ``huggingface_hub`` is not installed, or the download failed.
    """
    repo = hub_repository(name, key)
    by_hand = (f'or download {HUB_FILE} of https://huggingface.co/{repo} and set {key} '
               'to its path')
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f'{key} {name} needs the huggingface_hub package: pip install '
                              f'huggingface_hub, {by_hand}') from None
    try:
        return str(hf_hub_download(repo, HUB_FILE))
    except Exception as e:  # noqa: BLE001
        # Connection, HTTP, missing-repository and offline errors come from requests,
        # httpx or huggingface_hub itself depending on its version; each means the same
        # to the user: no file.
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON].rstrip() + '...'
        raise CheckpointError(f'{key} {name}: downloading {HUB_FILE} from the Hugging Face '
                              f'Hub failed ({reason}): check the network connection and the '
                              f'name, {by_hand}') from None
