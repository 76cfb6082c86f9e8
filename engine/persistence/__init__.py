"""Persistence below the event store: the journey recorders and their side tables, the writer
lock, the stored-event codec and the files and schemas they live in. Only engine.store (and the
key store) use it; the domain never does.

Two side tables live in the event store's own database and are written in the same transaction
as the events (JourneyRecorder.write):
  journey_touchpoints  event_id -> customer, content digest: idempotency forever, and a unique
                       key that makes concurrent writers of one touchpoint collide;
  journey_timers       customer -> next due time of a lifecycle re-evaluation.
A third, journey_positions, holds how far each relay that follows the log has got.
"""
