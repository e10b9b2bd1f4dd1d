"""One family of exceptions, each with a message that says what to do next."""


class NbserveError(Exception):
    """Base of every error nbserve raises on purpose."""


class ModelNotFoundError(NbserveError, LookupError):
    pass


class InstanceNotFoundError(NbserveError, LookupError):
    pass


class DeploymentNotFoundError(NbserveError, LookupError):
    pass


class MethodNotFoundError(NbserveError, AttributeError):
    """A client asked a served model for a method it does not serve (``client.transform``)."""


class CaptureError(NbserveError):
    """The object cannot be pickled or its methods cannot be found."""


class SampleError(NbserveError, ValueError):
    """The sample does not fit the model (calling a method on it failed)."""


class RequirementsError(NbserveError):
    """The captured artifact does not load or answer in a clean interpreter."""


class PortInUseError(NbserveError):
    pass


class RuntimeUnavailableError(NbserveError):
    """A runtime (usually Docker) cannot be used on this machine."""


class DockerUnavailableError(RuntimeUnavailableError):
    pass


class BuildError(NbserveError):
    pass


class InstanceStartError(NbserveError):
    """An instance exited or never became healthy; the message carries its log tail."""


class DiskFullError(NbserveError):
    """A write of the registry or a register's scratch directory found no space left; nothing was kept."""


class ArtifactIntegrityError(NbserveError):
    """Stored artifact bytes do not match their recorded sha256."""


class ServerError(NbserveError):
    """A served model answered with an error; carries the HTTP status and the server's message."""

    def __init__(self, message, status=None, type=None):
        super().__init__(message)
        self.status = status
        self.type = type


class IncompatibleVersionError(NbserveError):
    """A new version would break the callers of the one served (another input or output), so it was not
    swapped in; the message says what differs."""
