"""An integration's delivery as a follower of the event store (infra/follower_worker.py):
its own position and lease, wake-ups on every commit, standby in other processes.

The one difference from other delivering followers: a batch may be done in part (the
destination failed at its fifth message, say), and that part is saved at once, so the
worker's save at the end of a batch goes through the handler, which knows what is saved.
"""

from __future__ import annotations

import threading

from infra.follower import FollowerOptions
from infra.follower_worker import Follower
from infra.followers import Followers
from infra.integrations.deliverers import StartFollower
from infra.integrations.delivery import IntegrationDelivery
from infra.integrations.store import POSITIONS

OPTIONS = FollowerOptions(
    idle=1.0,
    standby_poll=0.5,  # a restarted follower takes over from the one it replaces quickly
    # After a failed delivery the worker reopens the handler almost at once: the handler
    # itself waits until its next attempt is due (DELIVERY_RETRY_* settings).
    backoff_initial=0.05,
    backoff_max=5.0,
    lease_check=5.0,
)


class IntegrationFollower(Follower):
    handler: IntegrationDelivery

    def save_position(self, start: int, end: int) -> None:
        self.handler.move_position(start, end)


def follower_for(handler: IntegrationDelivery, followers: Followers,
                 options: FollowerOptions = OPTIONS) -> IntegrationFollower:
    """The follower of one integration, its handler saving through the follower's lease."""
    follower = IntegrationFollower(handler, followers, options)
    lease = follower.lease

    def save(start: int, end: int) -> None:
        with followers.write_turn():
            lease.save(POSITIONS, start, end)

    handler.save_progress = save
    handler.check_lease = lease.check
    handler.write_turn = followers.write_turn
    return follower


def starter(followers: Followers, options: FollowerOptions = OPTIONS) -> StartFollower:
    """How this process runs an integration's handler: as a follower in its own thread."""

    def start(handler: IntegrationDelivery, stop: threading.Event) -> threading.Thread:
        follower = follower_for(handler, followers, options)
        thread = threading.Thread(target=follower.run, args=(stop,),
                                  name=f"deliver-{handler.name}", daemon=True)
        thread.start()
        return thread

    return start
