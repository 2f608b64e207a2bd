"""Atomic file writes: a killed process leaves either the old file or the new one.

Example:
  >>> import os, tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), 'metrics.json')
  >>> atomic_write(path, '{"miou": 0.9}')
  >>> open(path).read()
  '{"miou": 0.9}'
"""

import os
import tempfile
from typing import Union

# Read once: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str, content: Union[str, bytes]) -> None:
  """Writes `content` (text as UTF-8, or bytes) to `path` through a temp file + rename.

  The directory is created if needed; the temporary file lives next to the target
  so the rename never crosses file systems.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(content.encode('utf-8') if isinstance(content, str) else content)
    # mkstemp creates private files; give the result the usual permissions.
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
