package io.envid;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * {@code -Denvid.*} system properties rank above the {@code ENVID_*}
 * variables, with their own source. Runs in its own JVM (the harness sets
 * {@code -Denvid.env=uat -Denvid.idc=cn7} and {@code ENVID_ENV=dev}).
 */
@EnabledIfSystemProperty(named = "envid.env", matches = "uat")
class SystemPropertiesTest {
    @Test
    void propertiesWinOverVariablesAndSayWhereTheyCameFrom() {
        Environment e = Environment.current();
        assertEquals("uat", e.getEnv(), "envid.env over ENVID_ENV=dev");
        assertEquals("beta", e.getEnvType(), "uat is beta in the alias table");
        assertEquals("cn7", e.getIdc(), "envid.idc over the descriptor");
        String json = e.toJson(false, true);
        assertTrue(json.contains("\"system_property\"") && json.contains("\"envid.env\""),
                "the source names the property: " + json);
    }

    @Test
    void apolloServerPropertiesIdentifyAHostWithoutADescriptor() throws Exception {
        Path dir = Files.createTempDirectory("envid-apollo");
        Path props = dir.resolve("server.properties");
        Files.writeString(props, "env=PRO\nidc=cn5\n");
        // A root with no descriptor; Apollo's file moved by the property, as Apollo reads it.
        String old = System.getProperty("apollo.path.server.properties");
        System.setProperty("apollo.path.server.properties", props.toString());
        String oldEnv = System.clearProperty("envid.env");
        String oldIdc = System.clearProperty("envid.idc");
        try {
            Environment e = Environment.load(LoadOptions.builder().root(dir).envVars(false).build());
            assertEquals("PRO", e.getEnv());
            assertEquals("prod", e.getEnvType());
            assertEquals("cn5", e.getIdc());
            assertTrue(e.toJson(false, true).contains("\"apollo\""), e.toJson(false, true));
        } finally {
            if (old == null) {
                System.clearProperty("apollo.path.server.properties");
            } else {
                System.setProperty("apollo.path.server.properties", old);
            }
            System.setProperty("envid.env", oldEnv);
            System.setProperty("envid.idc", oldIdc);
        }
    }
}
