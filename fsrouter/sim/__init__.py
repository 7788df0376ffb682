"""A gevent FreeSWITCH simulator for tests and the demo (see each module's docstring).

Drive it like the real switch, over its inbound event socket only::

    sim = Simulator(speed=20, password="secret")
    port = sim.start_inbound()               # 127.0.0.1, port 0 -> the bound port
    # api global_setvar fsrouter_target=127.0.0.1:<daemon port>
    # bgapi originate {origination_uuid=U,...}loopback/<number>/public &park()
    # api uuid_send_dtmf U 2 / api uuid_kill U [CAUSE] / api show channels as json
    # api uuid_broadcast U <file> aleg / api uuid_recv_dtmf U # / api uuid_dump U json

or through the same driver class as the real switch (``fsrouter.sim.driver.SimSwitch``, a
``RealSwitch`` whose process is this simulator). Direct helpers for tests::

    record = sim.place_call(("127.0.0.1", port), "+493012345678", "+4915112345678", "Jane")
    sim.agent_outbound_call("1001", "customer", "+493012345678", {"fsr_agent": "alice"})
    sim.restart_inbound(down_s=0.1)          # a fault: every event-socket client is dropped
"""

from fsrouter.sim.clock import Clock
from fsrouter.sim.faults import Faults
from fsrouter.sim.inbound import InboundServer
from fsrouter.sim.record import AgentLeg, AppRun, SwitchRecord
from fsrouter.sim.scripts import CallerScript, Press
from fsrouter.sim.switch import Simulator

__all__ = ["AgentLeg", "AppRun", "CallerScript", "Clock", "Faults", "InboundServer", "Press",
           "Simulator", "SwitchRecord"]
